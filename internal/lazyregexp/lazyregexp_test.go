package lazyregexp_test

import (
	"testing"

	"github.com/stretchr/testify/assert"

	"github.com/minibox-lab/minibox/internal/lazyregexp"
)

func TestMatchString(t *testing.T) {
	name := lazyregexp.New(`^[a-z]+$`)
	assert.True(t, name.MatchString("abc"))
	assert.False(t, name.MatchString("ab1"))
	assert.True(t, name.MatchString("xyz"), "compiled once, matched again")
}
