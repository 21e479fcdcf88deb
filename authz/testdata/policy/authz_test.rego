package funcmesh.authz_test

import data.funcmesh.authz

test_admin_may_refund if {
	authz.allow with input as {"service": "payments", "function": "refund", "auth": {"role": "admin"}}
}

test_user_may_charge_a_little if {
	authz.allow with input as {"service": "payments", "function": "charge", "auth": {"sub": "u1"}, "params": {"amount": 5}}
}

test_user_may_not_charge_a_lot if {
	not authz.allow with input as {"service": "payments", "function": "charge", "auth": {"sub": "u1"}, "params": {"amount": 500}}
}

test_anonymous_gets_401 if {
	authz.status == 401 with input as {"service": "payments", "function": "charge", "auth": null, "params": {"amount": 5}}
}
