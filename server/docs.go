package server

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"html/template"
	"io"
	"io/fs"
	"net/http"
	"strings"
	"sync"

	"github.com/labstack/echo/v4"
	"github.com/swaggest/swgui/v5/static"
	"github.com/vearutop/statigz"

	"github.com/qs/apikeys/gen"
)

// The reference page is Swagger UI, whose scripts and styles github.com/swaggest/swgui
// embeds (precompressed). The page is ours rather than swgui's: swgui's has inline scripts,
// and this one must run under a Content-Security-Policy that allows nothing but the
// server's own origin. Its one script of our own, docsScript, is served as an asset too.
//
// Assets are served under /docs/<version>/, where version is a digest of all of them, so
// that they can be cached for a year: a new build that changes any asset changes its URL.
// An asset asked for under another version (a page from another replica, mid-deploy) is
// still served, but not to be cached.

// docsCSP allows the page to load and connect to its own origin only. Swagger UI's
// stylesheet draws icons from data: URLs; nothing else is inline.
const docsCSP = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; font-src 'self'; " +
	"connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"

// docsScript starts Swagger UI on the spec the server serves. Try-it-out sends requests to
// the origin that served the page whatever the spec's servers say (they name the address
// of `make run`): the page may be served on any host and port.
const docsScript = `"use strict";
(function () {
  // Replaces the spec's servers with this page's origin once the spec is parsed.
  function thisOrigin() {
    return {
      statePlugins: {
        spec: {
          wrapActions: {
            updateJsonSpec: function (update) {
              return function (spec) {
                if (spec && typeof spec === "object") {
                  spec.servers = [{url: window.location.origin, description: "The server of this page"}];
                }
                return update(spec);
              };
            }
          }
        }
      }
    };
  }
  window.addEventListener("load", function () {
    window.ui = SwaggerUIBundle({
      url: "/openapi.yaml",
      dom_id: "#swagger-ui",
      deepLinking: true,
      presets: [SwaggerUIBundle.presets.apis],
      plugins: [thisOrigin],
      layout: "BaseLayout",
      validatorUrl: null,
      showExtensions: true,
      displayRequestDuration: true,
      defaultModelsExpandDepth: 0
    });
  });
})();
`

// docsPageTemplate is the page; it names its assets by version.
var docsPageTemplate = template.Must(template.New("docs").Parse(`<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>API keys: API reference</title>
<link rel="stylesheet" href="{{.}}swagger-ui.css">
<link rel="icon" type="image/png" sizes="32x32" href="{{.}}favicon-32x32.png">
<link rel="icon" type="image/png" sizes="16x16" href="{{.}}favicon-16x16.png">
</head>
<body>
<div id="swagger-ui"></div>
<script src="{{.}}swagger-ui-bundle.js"></script>
<script src="{{.}}docs.js"></script>
</body>
</html>
`))

// docsAssets is what the page needs, built once: the file server, the version and the page.
type docsAssets struct {
	files   *statigz.Server
	version string
	page    []byte
}

var loadDocsAssets = sync.OnceValue(func() *docsAssets {
	files := statigz.FileServer(static.FS)
	h := sha256.New()
	// WalkDir visits in lexical order, so the digest is the same on every build.
	err := fs.WalkDir(static.FS, ".", func(name string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := fs.ReadFile(static.FS, name)
		if err != nil {
			return err
		}
		io.WriteString(h, name)
		h.Write(b)
		return nil
	})
	if err != nil {
		panic("server: the embedded Swagger UI cannot be read: " + err.Error()) // embedded: cannot happen
	}
	io.WriteString(h, docsScript)
	version := hex.EncodeToString(h.Sum(nil))[:12]
	var page strings.Builder
	if err := docsPageTemplate.Execute(&page, "/docs/"+version+"/"); err != nil {
		panic("server: the reference page does not render: " + err.Error())
	}
	return &docsAssets{files: files, version: version, page: []byte(page.String())}
})

// docsPage is the page as the strict server's answer: the generated one cannot set headers.
type docsPage []byte

func (p docsPage) VisitGetDocsResponse(w http.ResponseWriter) error {
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Content-Security-Policy", docsCSP)
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "no-referrer")
	// Small and cheap: always asked afresh, so it always names the current assets.
	h.Set("Cache-Control", "no-cache")
	w.WriteHeader(http.StatusOK)
	_, err := w.Write(p)
	return err
}

// GetDocs serves the API reference page.
func (s *Server) GetDocs(context.Context, gen.GetDocsRequestObject) (gen.GetDocsResponseObject, error) {
	return docsPage(loadDocsAssets().page), nil
}

func (p docsPage) VisitHeadDocsResponse(w http.ResponseWriter) error {
	return p.VisitGetDocsResponse(w)
}

// HeadDocs answers as GetDocs does; the HTTP server sends no body to a HEAD.
func (s *Server) HeadDocs(context.Context, gen.HeadDocsRequestObject) (gen.HeadDocsResponseObject, error) {
	return docsPage(loadDocsAssets().page), nil
}

// docsAsset serves the page's scripts, styles and icons, under /docs/<version>/<file>.
// These routes are no operation of openapi.yaml; anything not found is a plain 404.
func (s *Server) docsAsset(c echo.Context) error {
	a := loadDocsAssets()
	version, file, ok := strings.Cut(c.Param("*"), "/")
	// oauth2-redirect.html is swagger-ui's page for OAuth flows, which this API has none of:
	// it would be an HTML page of this origin served without the page's policy.
	if !ok || file == "" || strings.Contains(file, "/") || file == "oauth2-redirect.html" {
		return echo.ErrNotFound
	}
	h := c.Response().Header()
	h.Set("X-Content-Type-Options", "nosniff")
	if version == a.version {
		h.Set("Cache-Control", "public, max-age=31536000, immutable")
	} else {
		h.Set("Cache-Control", "no-cache")
	}
	if file == "docs.js" {
		return c.Blob(http.StatusOK, "text/javascript; charset=utf-8", []byte(docsScript))
	}
	r := c.Request().Clone(c.Request().Context())
	r.URL.Path = "/" + file
	if !a.files.Found(r) {
		h.Del("Cache-Control")
		return echo.ErrNotFound
	}
	a.files.ServeHTTP(c.Response(), r)
	return nil
}

// docsPageRoute serves the page outside the strict server, at the address the spec does
// not name (/docs/, for GET and HEAD).
func docsPageRoute(c echo.Context) error {
	return docsPage(loadDocsAssets().page).VisitGetDocsResponse(c.Response())
}
