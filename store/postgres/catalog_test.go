package postgres

import (
	"testing"

	"github.com/ferryhq/ferry/store"
	"github.com/ferryhq/ferry/store/storetest"
)

// The shared tests of store.Tx and of the reads of the catalog.
func TestTx(t *testing.T) {
	storetest.RunTx(t, func(t *testing.T) store.Store { return partial{Store: open(t, pg.DB(t))} })
}
