package iso

import "testing"

// BenchmarkUnpack reads an 0200 debit in each shipped dialect, as a bank
// link does with every request.
func BenchmarkUnpack(b *testing.B) {
	for _, d := range builtinDialects(b) {
		m := d.NewMessage()
		m.MTI("0200")
		for id, v := range map[int]string{2: "6228480000000202", 3: "000000", 4: "000000010000", 7: "1125101010", 11: "123456",
			12: "101010", 13: "1125", 32: "1234", 37: "000000000001", 41: "ATM00001", 42: "MERCHANT0000001", 49: "156"} {
			_ = d.SetField(m, id, v)
		}
		body, err := m.Pack()
		if err != nil {
			b.Fatal(err)
		}
		b.Run(d.Name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := d.Unpack(body); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
