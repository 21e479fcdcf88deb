package funcmesh.authz

default allow := false

# Admins may call anything.
allow if input.auth.role == "admin"

# Anyone signed in may charge up to 100.
allow if {
	input.service == "payments"
	input.function == "charge"
	input.auth != null
	input.params.amount <= 100
}

status := 401 if input.auth == null

reason := "only admins may do this" if not allow
