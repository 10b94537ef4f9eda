// Package lessons embeds the lesson texts (en/ and zh/) into the minibox
// binary. The format is described in docs/lesson-format.md.
package lessons

import "embed"

// FS holds en/NN-name.md and zh/NN-name.md.
//
//go:embed en zh
var FS embed.FS
