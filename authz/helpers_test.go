package authz_test

import "encoding/json"

func json_(s string) json.RawMessage { return json.RawMessage(s) }

func jsonNumber(s string) json.Number { return json.Number(s) }
