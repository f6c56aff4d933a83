package client

import (
	"context"
	"fmt"
	"io"
	"time"

	"github.com/moov-io/iso8583"
	connection "github.com/moov-io/iso8583-connection"

	"github.com/goldcard/goldcard/iso"
)

// DialBank connects to a switch as a bank would, for the load generator
// and the tests: requests are matched to responses by STAN.
func DialBank(ctx context.Context, addr string, d *iso.Dialect, h iso.Header, opts ...connection.Option) (*connection.Connection, error) {
	read := func(r io.Reader) (int, error) {
		b := make([]byte, h.Size())
		if _, err := io.ReadFull(r, b); err != nil {
			return 0, err
		}
		return h.Decode(b)
	}
	write := func(w io.Writer, n int) (int, error) {
		b, err := h.Append(nil, n)
		if err != nil {
			return 0, err
		}
		return w.Write(b)
	}
	opts = append([]connection.Option{connection.SendTimeout(10 * time.Second), connection.ConnectTimeout(5 * time.Second)}, opts...)
	c, err := connection.New(addr, d.Spec, read, write, opts...)
	if err != nil {
		return nil, err
	}
	if err := c.ConnectCtx(ctx); err != nil {
		return nil, fmt.Errorf("connecting to the switch at %s: %w", addr, err)
	}
	return c, nil
}

// NewMessage builds a message of dialect d from field values.
func NewMessage(d *iso.Dialect, mti string, fields map[int]string) (*iso8583.Message, error) {
	m := d.NewMessage()
	m.MTI(mti)
	for id, v := range fields {
		if err := d.SetField(m, id, v); err != nil {
			return nil, fmt.Errorf("DE%d: %w", id, err)
		}
	}
	return m, nil
}
