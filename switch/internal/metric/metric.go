// Package metric names the switch's Prometheus series and the label values
// their readers rely on. The packages that export a series and the tools and
// tests that read it (goldcard top, the alerts) use these names, so that no
// name is spelled twice.
package metric

// Series of the bank links (package link).
const (
	Connections      = "goldcard_connections"             // gauge: bank, state (see the Link* states)
	ConnectionEvents = "goldcard_connection_events_total" // bank, event
	LimitBreaches    = "goldcard_limit_breaches_total"    // bank, limit
	Frames           = "goldcard_frames_total"            // bank, direction
	Bytes            = "goldcard_bytes_total"             // bank, direction
	UnpackErrors     = "goldcard_unpack_errors_total"     // bank, reason
	MACFailures      = "goldcard_mac_failures_total"      // bank, reason
	ResponsesLost    = "goldcard_responses_lost_total"    // bank
	InFlight         = "goldcard_requests_in_flight"      // gauge: bank
)

// States of a bank link in Connections.
const (
	LinkConnected = "connected"
	LinkSignedOn  = "signed_on" // after a 0800 sign-on, until sign-off
	LinkDraining  = "draining"
)

// Limits a link can breach, in LimitBreaches.
const (
	LimitIdle      = "idle"       // no frame for the idle timeout: link closed
	LimitSlowFrame = "slow_frame" // a frame not complete within the frame timeout: link closed
	LimitFrameSize = "frame_size" // a length header over max_frame: link closed
	LimitRate      = "rate"       // a request over max_request_rate: answered 91
)

// Why a frame could not be unpacked, in UnpackErrors.
const (
	UnpackMTI      = "mti"            // the MTI itself is unreadable
	UnpackBitmap   = "bitmap"         // the bitmap is unreadable
	UnpackField    = "field"          // a field the bitmap announces cannot be read
	UnpackTrailing = "trailing_bytes" // bytes follow the last field announced
)

// Series of the issuer's decisions (package issuer).
const (
	Requests           = "goldcard_requests_total"             // bank, mti, processing_code, response_code
	RequestDuration    = "goldcard_request_duration_seconds"   // histogram: bank, mti
	DeadlineMisses     = "goldcard_deadline_misses_total"      // bank, stage
	QuotaRejections    = "goldcard_quota_rejections_total"     // bank
	Exceptions         = "goldcard_exceptions_total"           // bank, kind
	LedgerTransaction  = "goldcard_ledger_transaction_seconds" // histogram: result
	Redemptions        = "goldcard_redemptions_total"          // bank, purpose, result
	RedemptionDuration = "goldcard_redemption_duration_seconds"
	LockWait           = "goldcard_lock_wait_seconds"
	OrdersSettled      = "goldcard_orders_settled_total" // state
	CommitGroupSize    = "goldcard_commit_group_size"    // histogram: requests per group commit
)

// Series of the admin API (package admin).
const AdminRefused = "goldcard_admin_refused_total" // reason

// Series of the running switch (package daemon).
const (
	BuildInfo          = "goldcard_build_info" // version, commit, goversion
	ConfigRevision     = "goldcard_config_revision"
	ConfigApply        = "goldcard_config_apply_seconds"
	ConfigRejected     = "goldcard_config_rejected_total"
	KeysResealed       = "goldcard_keys_resealed_rows_total"
	HoldsExpired       = "goldcard_holds_expired_total"
	TimerLateness      = "goldcard_timer_lateness_seconds" // kind
	TimerRetries       = "goldcard_timer_retries_total"    // kind
	TimerDeadTotal     = "goldcard_timer_dead_total"       // kind
	TimerLeader        = "goldcard_timer_leader"
	TimerLeaderChanges = "goldcard_timer_leader_changes_total"
	TimerPending       = "goldcard_timer_pending"
	TimerDead          = "goldcard_timer_dead"
	PostgresUp         = "goldcard_postgres_up"
	EtcdUp             = "goldcard_etcd_up"
	ExceptionsOpen     = "goldcard_exceptions_open"
	ReconCasesOpen     = "goldcard_recon_cases_open"
	ReconOldestOpen    = "goldcard_recon_case_oldest_open_seconds"
)

// Series of the database pool (package daemon).
const (
	DBConnections      = "goldcard_db_connections" // state
	DBMaxConnections   = "goldcard_db_max_connections"
	DBAcquires         = "goldcard_db_acquires_total"
	DBAcquireWait      = "goldcard_db_acquire_wait_seconds_total"
	DBEmptyAcquires    = "goldcard_db_empty_acquires_total"
	DBCanceledAcquires = "goldcard_db_canceled_acquires_total"
	DBConnects         = "goldcard_db_connects_total"
	DBIdleClosed       = "goldcard_db_idle_closed_total"
	DBLifetimeClosed   = "goldcard_db_lifetime_closed_total"
)

// Approved says whether a response code approves: 00, and the codes that
// approve with a condition (08 with identification, 10 in part, 11 VIP).
func Approved(code string) bool {
	switch code {
	case "00", "08", "10", "11":
		return true
	}
	return false
}
