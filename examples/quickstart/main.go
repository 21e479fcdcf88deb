// Command quickstart will run a whole functions mesh in one process. Until
// the mesh package lands it only reports that, so the README's first
// command already works.
package main

import "fmt"

func main() {
	fmt.Println("funcmesh quickstart: placeholder; the broker, mesh and gateway are not built yet, so nothing was started.")
}
