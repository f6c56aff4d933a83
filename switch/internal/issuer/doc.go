// Package issuer decides what banks ask of a card: per message class
// (original, advice, reversal, network) it looks the request up in the
// ledger, decides on what it finds, and stores the decision with its
// response in one transaction. A debit the card's cash cannot cover is
// covered by redeeming the shortfall from the card's fund inside the
// bank's deadline. The response code (DE39) is decided in one function,
// responseCode. The issuer knows nothing of connections: the link hands it
// unpacked messages and writes what it returns.
package issuer
