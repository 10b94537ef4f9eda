package engine

import (
	"crypto/rand"
	"math/big"
)

// randomName is docker's kind of name, adjective_scientist: easier to
// type than an id.
func randomName() string {
	adjectives := []string{"brave", "calm", "eager", "fond", "gentle", "happy", "keen", "lucid", "merry", "nifty",
		"proud", "quiet", "sharp", "tender", "vivid", "witty", "zen", "bold", "clever", "dreamy"}
	names := []string{"bell", "curie", "darwin", "euler", "faraday", "gauss", "hopper", "kepler", "lovelace", "maxwell",
		"noether", "pascal", "ritchie", "shannon", "thompson", "turing", "wozniak", "torvalds", "lamport", "knuth"}
	return pick(adjectives) + "_" + pick(names)
}

func pick(list []string) string {
	n, _ := rand.Int(rand.Reader, big.NewInt(int64(len(list))))
	return list[n.Int64()]
}
