package apikeys_test

import (
	"os/exec"
	"strings"
	"testing"
)

// TestDependenciesFlowOneWay holds the layout of ARCHITECTURE.md: the domain knows no HTTP
// and no SQL, the use cases no HTTP, the edge no SQL driver, persistence no HTTP. It reads
// each package's transitive dependencies from `go list -deps`.
func TestDependenciesFlowOneWay(t *testing.T) {
	const mod = "github.com/qs/apikeys"
	http := []string{mod + "/gen", mod + "/server", "github.com/labstack/echo", "github.com/oapi-codegen", "github.com/getkin/kin-openapi"}
	sql := []string{mod + "/store", "github.com/jmoiron/sqlx", "github.com/lib/pq", "modernc.org/sqlite"}
	for pkg, forbidden := range map[string][]string{
		mod:                      append(append([]string{mod + "/service"}, http...), sql...),
		mod + "/keys":            append(append([]string{mod + "/service"}, http...), sql...),
		mod + "/service":         append(append([]string{}, http...), sql...),
		mod + "/server":          sql,
		mod + "/store":           append([]string{mod + "/service"}, http...),
		mod + "/store/storetest": append([]string{mod + "/service"}, http...),
	} {
		out, err := exec.Command("go", "list", "-deps", pkg).Output()
		if err != nil {
			t.Fatalf("go list -deps %s: %v", pkg, err)
		}
		for _, dep := range strings.Fields(string(out)) {
			if dep == pkg {
				continue
			}
			for _, f := range forbidden {
				if dep == f || strings.HasPrefix(dep, f+"/") {
					t.Errorf("%s depends on %s", pkg, dep)
				}
			}
		}
	}
}
