package authz_test

import (
	"encoding/json"
	"math"
)

func json_(s string) json.RawMessage { return json.RawMessage(s) }

func jsonNumber(s string) json.Number { return json.Number(s) }

func nanValue() float64 { return math.NaN() }
