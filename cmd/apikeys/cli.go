package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"reflect"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/qs/apikeys/gen"
	"github.com/qs/apikeys/store"
)

// Exit statuses scripts can rely on.
const (
	exitOK       = 0
	exitFailure  = 1 // the service answered with an error, or could not be reached
	exitUsage    = 2 // an unknown command or flag, a bad flag value, a missing setting
	exitNotValid = 3 // keys verify: the service answered, and the key is not VALID
)

const defaultURL = "http://localhost:8080"

// environmentHelp is the part of the help that says where the client's settings come from.
const environmentHelp = `The client commands (keys, subjects) read two environment variables:
  APIKEYS_URL    the service, default ` + defaultURL + `
  APIKEYS_TOKEN  the bearer token: the service's admin token (the APIKEYS_ADMIN_TOKEN it runs
                 with) or an API key it issued whose scopes allow the command. It is read
                 from the environment only, never from a flag, so that it stays out of shell
                 history and of the process list, and it is never printed.`

const exitHelp = `Exit status: 0 on success; 1 when the service answers with an error (its title,
detail and each offending field are printed on standard error) or cannot be reached;
2 on a usage error (an unknown command or flag, a bad flag value, APIKEYS_TOKEN unset);
3 when keys verify is answered with any code but VALID.`

// run is the binary: it parses args and runs the command they name, reading stdin and
// writing stdout and stderr only. It returns what the command returned, for exitCode to
// report; nothing about the error is printed here.
func run(ctx context.Context, args []string, getenv func(string) string, stdin io.Reader, stdout, stderr io.Writer) error {
	c := &cli{getenv: getenv, stdin: stdin, stdout: stdout, stderr: stderr}
	root := c.rootCommand()
	if args == nil {
		args = []string{} // nil would make cobra read os.Args
	}
	root.SetArgs(args)
	root.SetIn(stdin)
	root.SetOut(stdout)
	root.SetErr(stderr)
	cmd, err := root.ExecuteContextC(ctx)
	if err != nil && !c.ran {
		// Cobra refused the command line before any command ran.
		return &usageError{err: err, cmd: cmd.CommandPath()}
	}
	if token := getenv("APIKEYS_TOKEN"); err != nil && len(token) >= 8 {
		// A proxy or a debug page that echoes request headers would otherwise put the
		// token into the error, and so into a CI log.
		err = &redacted{err: err, token: token}
	}
	return err
}

// redacted is an error whose text never shows the token.
type redacted struct {
	err   error
	token string
}

func (e *redacted) Error() string {
	return strings.ReplaceAll(e.err.Error(), e.token, "<APIKEYS_TOKEN>")
}
func (e *redacted) Unwrap() error { return e.err }

// exitCode reports err on stderr and returns the process's exit status for it.
func exitCode(err error, stderr io.Writer) int {
	if err == nil {
		return exitOK
	}
	var ue *usageError
	if errors.As(err, &ue) {
		fmt.Fprintf(stderr, "apikeys: %s\nRun '%s --help' for usage.\n", printable(ue.err.Error(), true), ue.cmd)
		return exitUsage
	}
	fmt.Fprintln(stderr, "apikeys:", printable(err.Error(), true))
	var nv *notValidError
	if errors.As(err, &nv) {
		return exitNotValid
	}
	return exitFailure
}

// usageError is a command line the binary cannot act on.
type usageError struct {
	err error
	cmd string // the command path, for the hint
}

func (e *usageError) Error() string { return e.err.Error() }
func (e *usageError) Unwrap() error { return e.err }

func usagef(cmd *cobra.Command, format string, a ...any) error {
	return &usageError{err: fmt.Errorf(format, a...), cmd: cmd.CommandPath()}
}

// apiError is an answer of the service other than 2xx. Its message holds the problem's
// title, status, detail and every field error, which is all the service tells.
type apiError struct {
	status    int
	problem   *problem // nil when the body is not a problem document
	body      []byte
	requestID string // the service's X-Request-ID, which its log line carries
}

// problem is an RFC 9457 problem document, as the service answers every error.
type problem struct {
	Title  string `json:"title"`
	Detail string `json:"detail"`
	Errors []struct {
		In     string `json:"in"`
		Field  string `json:"field"`
		Detail string `json:"detail"`
	} `json:"errors"`
}

func (e *apiError) Error() string {
	var b strings.Builder
	if p := e.problem; p != nil {
		fmt.Fprintf(&b, "%s (HTTP %d)", clip(oneLine(p.Title)), e.status)
		if p.Detail != "" {
			fmt.Fprintf(&b, ": %s", clip(oneLine(p.Detail)))
		}
		for i, f := range p.Errors {
			if i == 50 {
				fmt.Fprintf(&b, "\n  ... and %d more", len(p.Errors)-i)
				break
			}
			fmt.Fprintf(&b, "\n  %s %s: %s", clip(oneLine(f.In)), clip(oneLine(f.Field)), clip(oneLine(f.Detail)))
		}
	} else {
		fmt.Fprintf(&b, "the service answered HTTP %d %s", e.status, http.StatusText(e.status))
		if s := oneLine(string(e.body)); s != "" {
			if len(s) > 200 {
				s = s[:200] + "..."
			}
			fmt.Fprintf(&b, ": %s", s)
		}
	}
	if e.requestID != "" {
		fmt.Fprintf(&b, "\n  (request id %s, in the service's log line for this request)", clip(oneLine(e.requestID)))
	}
	if e.status == http.StatusUnauthorized {
		b.WriteString("\n  (check APIKEYS_TOKEN: the admin token or a key this service issued)")
	}
	return b.String()
}

// clip bounds a text of the service's answer on the terminal.
func clip(s string) string {
	if len(s) > 500 {
		return strings.ToValidUTF8(s[:500], "") + "..."
	}
	return s
}

// notValidError is a verification answered with a code other than VALID.
type notValidError struct{ code gen.VerifyCode }

func (e *notValidError) Error() string { return fmt.Sprintf("the key is not valid: %s", e.code) }

// cli holds what every command reads and writes.
type cli struct {
	getenv func(string) string
	stdin  io.Reader
	stdout io.Writer
	stderr io.Writer
	ran    bool // a command's own code started: its errors are not cobra's usage errors

	output outputFormat
}

// runs marks the start of a command's own code, so that run can tell its errors from
// the command-line errors cobra returns before it.
func (c *cli) runs(f func(cmd *cobra.Command, args []string) error) func(*cobra.Command, []string) error {
	return func(cmd *cobra.Command, args []string) error {
		c.ran = true
		return f(cmd, args)
	}
}

func (c *cli) rootCommand() *cobra.Command {
	serveCmd := func(cmd *cobra.Command, _ []string) error {
		return serve(cmd.Context(), c.getenv, c.stdout, c.stderr)
	}
	root := &cobra.Command{
		Use:   "apikeys",
		Short: "The API-key service and its command-line client",
		Long: `apikeys runs the API-key service (apikeys serve, the default) and is its client.

The service is configured by APIKEYS_* environment variables; see README.md.

` + environmentHelp + `

` + exitHelp,
		// Cobra's own refusal of an unknown command ends in a tab-indented list, which the
		// printing of errors escapes; unknownCommand says it on one line.
		Args:          unknownCommand,
		RunE:          c.runs(serveCmd),
		SilenceErrors: true,
		SilenceUsage:  true,
		Version:       buildVersion(),
	}
	root.SetVersionTemplate("apikeys {{.Version}}\n")
	// "keys creat --name x": cobra parses the flags of "keys", finds --name unknown, and
	// would report the flag; the mistake is the command.
	root.SetFlagErrorFunc(func(cmd *cobra.Command, err error) error {
		if cmd.HasAvailableSubCommands() {
			if args := cmd.Flags().Args(); len(args) > 0 {
				if uerr := unknownCommand(cmd, args); uerr != nil {
					return uerr
				}
			}
		}
		return err
	})
	root.AddCommand(
		&cobra.Command{
			Use:   "serve",
			Short: "Run the service (the default command)",
			Long: `Runs the service on APIKEYS_ADDR until SIGINT or SIGTERM, then shuts down gracefully.
Migrations are applied at start. README.md's Configuration says more of each setting.

` + settingsHelp(),
			Args: cobra.NoArgs,
			RunE: c.runs(serveCmd),
		},
		&cobra.Command{
			Use:   "version",
			Short: "Print the version and commit of this build",
			Args:  cobra.NoArgs,
			RunE: c.runs(func(cmd *cobra.Command, _ []string) error {
				_, err := fmt.Fprintf(c.stdout, "apikeys %s\n", buildVersion())
				return err
			}),
		},
		&cobra.Command{
			Use:   "healthcheck",
			Short: "Exit 0 when the local service on APIKEYS_ADDR is ready (for container health checks)",
			Args:  cobra.NoArgs,
			RunE: c.runs(func(cmd *cobra.Command, _ []string) error {
				return healthcheck(cmd.Context(), c.getenv)
			}),
		},
		&cobra.Command{
			Use:   "migrate",
			Short: "Apply the database migrations to APIKEYS_DATABASE_URL and exit",
			Long: `Applies the migrations the database named by APIKEYS_DATABASE_URL has not seen, each in
its own transaction, and lists every migration the database has. serve applies them too at
start; migrate lets a deployment apply them once, before the replicas start.`,
			Args: cobra.NoArgs,
			RunE: c.runs(c.migrate),
		},
		c.keysCommand(),
		c.subjectsCommand(),
	)
	return root
}

// group is a command that only holds others: without one it prints its help; an unknown
// one is a usage error.
func group(use, short, long string) *cobra.Command {
	return &cobra.Command{
		Use:   use,
		Short: short,
		Long:  long,
		Args:  unknownCommand,
		RunE:  func(cmd *cobra.Command, _ []string) error { return cmd.Help() },
	}
}

// unknownCommand refuses any argument of a command that only holds others, naming the
// closest commands it has.
func unknownCommand(cmd *cobra.Command, args []string) error {
	if len(args) == 0 {
		return nil
	}
	msg := fmt.Sprintf("unknown command %q for %q", args[0], cmd.CommandPath())
	if cmd.SuggestionsMinimumDistance <= 0 {
		cmd.SuggestionsMinimumDistance = 2 // what cobra's own refusal uses; SuggestionsFor alone reads 0
	}
	if s := cmd.SuggestionsFor(args[0]); len(s) > 0 {
		msg += " (did you mean " + strings.Join(s, " or ") + "?)"
	}
	return errors.New(msg)
}

func (c *cli) migrate(cmd *cobra.Command, _ []string) error {
	cfg, err := loadConfig(c.getenv)
	if err != nil {
		return err
	}
	ms, err := store.Migrate(cmd.Context(), cfg.databaseURL, store.Options{Timeout: cfg.dbTimeout})
	if err != nil {
		return err
	}
	w := newTable(c.stdout)
	for _, m := range ms {
		state := "applied " + m.AppliedAt.UTC().Format(time.RFC3339)
		if m.New {
			state = "applied now"
		}
		w.row(m.Version, state)
	}
	if err := w.Flush(); err != nil {
		return err
	}
	fmt.Fprintf(c.stdout, "The %s is up to date.\n", dbName(cfg.databaseURL))
	return nil
}

// client returns the generated client for APIKEYS_URL, sending APIKEYS_TOKEN as the bearer.
func (c *cli) client(cmd *cobra.Command) (*gen.ClientWithResponses, error) {
	base := c.getenv("APIKEYS_URL")
	if base == "" {
		base = defaultURL
	}
	u, err := url.Parse(base)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, usagef(cmd, "APIKEYS_URL: want the service's http or https URL, such as %s", defaultURL)
	}
	token := c.getenv("APIKEYS_TOKEN")
	if token == "" {
		if c.getenv("APIKEYS_ADMIN_TOKEN") != "" {
			// The server's variable is set in this shell (as the README's walkthrough does);
			// the client does not take it silently, since a shell may hold both for two services.
			return nil, usagef(cmd, "APIKEYS_TOKEN is not set (APIKEYS_ADMIN_TOKEN, the server's setting, is): "+
				"export APIKEYS_TOKEN=\"$APIKEYS_ADMIN_TOKEN\" to call the service as its admin")
		}
		return nil, usagef(cmd, "APIKEYS_TOKEN is not set: set it to the service's admin token or to an API key it issued")
	}
	auth := func(_ context.Context, req *http.Request) error {
		req.Header.Set("Authorization", "Bearer "+token)
		req.Header.Set("User-Agent", "apikeys-cli")
		return nil
	}
	hc := &http.Client{
		Timeout:   30 * time.Second,
		Transport: limitedBodies{http.DefaultTransport},
		// The API never redirects. Following one would send the token (net/http keeps it
		// for the same host, any port or scheme: https to http included) and, on 307/308,
		// the body, which for keys verify is the secret, wherever the redirect points.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	return gen.NewClientWithResponses(base, gen.WithHTTPClient(hc), gen.WithRequestEditorFn(auth))
}

// maxResponse bounds an answer the client reads: a page of 100 keys with the largest
// metadata is under 1 MiB.
const maxResponse = 16 << 20

// limitedBodies refuses to read more than maxResponse of an answer, which the generated
// client would otherwise read whole, whatever its size.
type limitedBodies struct{ next http.RoundTripper }

func (l limitedBodies) RoundTrip(r *http.Request) (*http.Response, error) {
	res, err := l.next.RoundTrip(r)
	if err == nil {
		res.Body = &limitedBody{ReadCloser: res.Body, left: maxResponse}
	}
	return res, err
}

type limitedBody struct {
	io.ReadCloser
	left int64
}

func (b *limitedBody) Read(p []byte) (int, error) {
	if b.left <= 0 {
		return 0, fmt.Errorf("the answer is larger than %d MiB; this is not the API-key service", maxResponse>>20)
	}
	if int64(len(p)) > b.left {
		p = p[:b.left]
	}
	n, err := b.ReadCloser.Read(p)
	b.left -= int64(n)
	return n, err
}

// response is what every generated response type offers.
type response interface {
	StatusCode() int
	GetBody() []byte
	ContentType() string
}

// check turns a generated call's result into nil for a 2xx answer, an *apiError for any
// other answer, or an error saying the service could not be reached or read.
func check(res response, err error) error {
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			return fmt.Errorf("cannot reach the service (%s %s): %w", strings.ToUpper(ue.Op), redact(ue.URL), ue.Err)
		}
		return fmt.Errorf("the service's answer cannot be read: %w", err)
	}
	if s := res.StatusCode(); s >= 200 && s < 300 {
		// The generated client decodes only the success the operation documents, as JSON:
		// another 2xx, or a body of another type, leaves nothing for the command to print.
		if f := reflect.Indirect(reflect.ValueOf(res)).FieldByName(fmt.Sprintf("JSON%d", s)); !f.IsValid() || f.IsNil() {
			return fmt.Errorf("the service's answer is not one the API documents: HTTP %d with Content-Type %q; is APIKEYS_URL the API-key service?",
				s, oneLine(clip(res.ContentType())))
		}
		return nil
	}
	e := &apiError{status: res.StatusCode(), body: res.GetBody()}
	if f := reflect.Indirect(reflect.ValueOf(res)).FieldByName("HTTPResponse"); f.IsValid() && !f.IsNil() {
		e.requestID = f.Interface().(*http.Response).Header.Get("X-Request-ID")
	}
	var p problem
	if err := json.Unmarshal(e.body, &p); err == nil && p.Title != "" {
		e.problem = &p
	}
	return e
}

// redact drops any user information from a URL before it is printed.
func redact(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "(the URL)"
	}
	u.User = nil
	return u.String()
}
