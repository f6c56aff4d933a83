package link

import (
	"context"
	"encoding/binary"
	"io"
	"net"
	"testing"
	"time"

	"github.com/moov-io/iso8583"

	"github.com/goldcard/goldcard/config"
	"github.com/goldcard/goldcard/iso"
	"github.com/goldcard/goldcard/switch/internal/client"
)

// panicsOn999999 is answerAll, but its handling of a request with STAN
// 999999 panics, as a bug would.
type panicsOn999999 struct {
	answerAll
	failed chan error
}

func (h panicsOn999999) Handle(ctx context.Context, b *config.Bank, d *iso.Dialect, lim config.Limits, msg *iso8583.Message, body []byte) ([]byte, answered) {
	if stan, _ := msg.GetString(11); stan == "999999" {
		panic("a bug in the handler")
	}
	return h.answerAll.Handle(ctx, b, d, lim, msg, body)
}

func (h panicsOn999999) Failed(err error) answered {
	h.failed <- err
	return answered{}
}

// TestHandlerPanic: a request whose handling panics is accounted for as
// failed, gets no answer, and the link and the switch carry on.
func TestHandlerPanic(t *testing.T) {
	t.Parallel()
	h := panicsOn999999{failed: make(chan error, 1)}
	s := testListenersWith(t, h)
	if err := s.Apply(s.env.cfg.Load()); err != nil {
		t.Fatal(err)
	}
	c, err := net.Dial("tcp", s.BankAddr("default").String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	d, _ := iso.Builtin(iso.DefaultDialect)
	framing, err := iso.HeaderByName(iso.HeaderBinary2)
	if err != nil {
		t.Fatal(err)
	}
	// write sends an echo with the STAN, framed with its length.
	write := func(stan string) {
		m, err := client.NewMessage(d, "0800", map[int]string{7: "1125101010", 11: stan, 70: "301"})
		if err != nil {
			t.Fatal(err)
		}
		frame, err := m.Pack()
		if err == nil {
			frame, err = iso.Frame(framing, frame)
		}
		if err != nil {
			t.Fatal(err)
		}
		if _, err := c.Write(frame); err != nil {
			t.Fatal(err)
		}
	}
	write("999999")
	select {
	case err := <-h.failed:
		if err == nil {
			t.Fatal("failed without a reason")
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the panic was not accounted for")
	}
	write("000001")
	_ = c.SetReadDeadline(time.Now().Add(30 * time.Second))
	var hdr [2]byte
	if _, err := io.ReadFull(c, hdr[:]); err != nil {
		t.Fatalf("the link did not carry on: %v", err)
	}
	resp := make([]byte, binary.BigEndian.Uint16(hdr[:]))
	if _, err := io.ReadFull(c, resp); err != nil {
		t.Fatal(err)
	}
	if m, err := d.Unpack(resp); err != nil {
		t.Fatal(err)
	} else if stan, _ := m.GetString(11); stan != "000001" {
		t.Fatalf("answered STAN %s: the panicked request was answered", stan)
	}
}
