package link

// MaxHandshakesPerAddr is maxHandshakesPerAddr, for the tests of the
// links from outside.
const MaxHandshakesPerAddr = maxHandshakesPerAddr

// ReusePort is reusePort, for a test's stranger on a bank port.
var ReusePort = reusePort
