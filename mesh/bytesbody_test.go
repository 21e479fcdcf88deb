package mesh_test

import (
	"github.com/funcmesh/funcmesh/authz"
	"github.com/funcmesh/funcmesh/mesh"
)

// The authz middleware's body is one the gateway sends without a copy.
var _ mesh.BytesBody = (*authz.Body)(nil)
