// Package fund speaks to the money-market fund company: redemption and
// subscription orders through a Provider (the built-in Simulator, or the
// HTTP Gateway and the fundsim server that speaks its protocol), the
// quota day, and the Reconciler that settles orders left pending.
package fund
