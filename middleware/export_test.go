package middleware

// DecodeJSONObject exposes the claims decoder to the black-box tests, which
// hold it to encoding/json's results.
var DecodeJSONObject = decodeJSONObject
