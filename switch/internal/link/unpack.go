package link

import (
	"errors"
	"fmt"

	isoerrors "github.com/moov-io/iso8583/errors"

	"github.com/goldcard/goldcard/iso"
	"github.com/goldcard/goldcard/switch/internal/metric"
)

// Why a frame could not be unpacked: the reason label of
// goldcard_unpack_errors_total.
const (
	unpackMTI      = metric.UnpackMTI
	unpackBitmap   = metric.UnpackBitmap
	unpackField    = metric.UnpackField
	unpackTrailing = metric.UnpackTrailing
)

// unpackReasons are every value of the reason label.
var unpackReasons = []string{unpackMTI, unpackBitmap, unpackField, unpackTrailing}

// unpackFailure is the reason label for an error of Dialect.Unpack.
func unpackFailure(err error) string {
	if errors.Is(err, iso.ErrTrailingBytes) {
		return unpackTrailing
	}
	var ue *isoerrors.UnpackError
	if errors.As(err, &ue) {
		switch ue.FieldID {
		case "0":
			return unpackMTI
		case "1":
			return unpackBitmap
		}
	}
	return unpackField
}

// unpackReason says what could not be read, for the log, without the
// message's bytes.
func unpackReason(err error) string {
	var ue *isoerrors.UnpackError
	switch {
	case errors.Is(err, iso.ErrTrailingBytes):
		return err.Error() // a count and a field number
	case errors.As(err, &ue):
		return fmt.Sprintf("field %v cannot be unpacked", ue.FieldIDs())
	}
	return "message cannot be unpacked"
}
