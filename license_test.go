package apikeys_test

import (
	"os"
	"strings"
	"testing"

	apikeys "github.com/qs/apikeys"
	"go.yaml.in/yaml/v3"
)

// TestLicenceIsOneLicence: the LICENSE file is the licence openapi.yaml and README.md claim.
func TestLicenceIsOneLicence(t *testing.T) {
	var spec struct {
		Info struct {
			License struct{ Name, URL string }
		}
	}
	if err := yaml.Unmarshal(apikeys.OpenAPI, &spec); err != nil {
		t.Fatal(err)
	}
	licence, err := os.ReadFile("LICENSE")
	if err != nil {
		t.Fatal(err)
	}
	readme, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	name := spec.Info.License.Name
	if name == "" || !strings.HasPrefix(string(licence), name+" License\n") {
		t.Errorf("openapi.yaml names the licence %q; LICENSE begins %q", name, strings.SplitN(string(licence), "\n", 2)[0])
	}
	if !strings.Contains(string(readme), "\n## Licence\n\n"+name+": see [LICENSE](LICENSE)") {
		t.Errorf("README.md does not name the licence %s with a link to LICENSE", name)
	}
}
