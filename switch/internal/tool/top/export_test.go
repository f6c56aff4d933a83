package top

// CheckFrame is checkFrame, for the tests of goldcard top against switches.
var CheckFrame = checkFrame
