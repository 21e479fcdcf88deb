# The quickstart's Rego policy. rules.json decides first; a call it allows
# comes here, and this policy's decision stands. It adds what the JSON rules
# cannot say: a user may read only their own profile, unless an admin.
package funcmesh.authz

default allow := false

allow if not reads_profile

allow if {
	reads_profile
	input.params.user == input.auth.sub
}

allow if {
	reads_profile
	input.auth.role == "admin"
}

reads_profile if {
	input.service == "accounts"
	input.function == "profile"
}

reason := "you may read only your own profile" if not allow
