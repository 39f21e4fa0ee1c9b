package store

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/qs/apikeys"
	"github.com/qs/apikeys/internal/testdb"
)

// TestEveryListFilterUsesAnIndex asks each database for its plan of every filter ListKeys
// can apply, and fails when a filter would be answered by a full scan of the table.
func TestEveryListFilterUsesAnIndex(t *testing.T) {
	cursor := &apikeys.Cursor{CreatedAt: time.Now(), ID: "apk_x"}
	// Each filter and the indexes (any one of them) that must serve it, in the plan's words.
	filters := map[string]struct {
		f       apikeys.KeyFilter
		indexes []string
	}{
		"none":         {apikeys.KeyFilter{}, []string{"api_keys_created_idx"}},
		"tenant":       {apikeys.KeyFilter{TenantID: "t"}, []string{"api_keys_tenant_idx"}},
		"environment":  {apikeys.KeyFilter{EnvironmentID: "e"}, []string{"api_keys_environment_idx"}},
		"subject":      {apikeys.KeyFilter{SubjectID: "subject_x"}, []string{"api_keys_subject_idx"}},
		"creator":      {apikeys.KeyFilter{CreatedBySubjectID: "subject_x"}, []string{"api_keys_created_by_idx"}},
		"intendedUse":  {apikeys.KeyFilter{IntendedUse: "ci"}, []string{"api_keys_intended_use_idx"}},
		"active":       {apikeys.KeyFilter{Status: apikeys.StatusActive}, []string{"api_keys_unrevoked_idx", "api_keys_expires_idx"}},
		"revoked":      {apikeys.KeyFilter{Status: apikeys.StatusRevoked}, []string{"api_keys_revoked_idx"}},
		"expired":      {apikeys.KeyFilter{Status: apikeys.StatusExpired}, []string{"api_keys_unrevoked_idx", "api_keys_expires_idx"}},
		"cursor":       {apikeys.KeyFilter{After: cursor}, []string{"api_keys_created_idx"}},
		"tenantCursor": {apikeys.KeyFilter{TenantID: "t", After: cursor}, []string{"api_keys_tenant_idx"}},
		"activeCursor": {apikeys.KeyFilter{Status: apikeys.StatusActive, After: cursor}, []string{"api_keys_unrevoked_idx"}},
	}
	for _, engine := range testdb.Engines(t) {
		t.Run(engine, func(t *testing.T) {
			ctx := context.Background()
			s, err := Open(ctx, testdb.New(t, engine).URL)
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			conn, err := s.db.Connx(ctx)
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			// The plan line of an index's conditions, and the cursor's among them.
			explain, cond, bound := "EXPLAIN QUERY PLAN ", "USING INDEX", "(created_at,id)<(?,?)"
			if s.dialect == postgres {
				// An empty table is cheapest to scan; forbid that so the planner shows
				// whether an index could serve the query at all.
				if _, err := conn.ExecContext(ctx, "SET enable_seqscan = off"); err != nil {
					t.Fatal(err)
				}
				explain, cond, bound = "EXPLAIN ", "Index Cond:", "ROW(created_at, id) < ROW("
			}
			for name, tt := range filters {
				f := tt.f
				f.Now, f.Limit = time.Now(), 10
				query, args, err := s.listQuery(f)
				if err != nil {
					t.Fatal(err)
				}
				var lines []string
				rows, err := conn.QueryxContext(ctx, explain+query, args...)
				if err != nil {
					t.Fatalf("%s: %v", name, err)
				}
				for rows.Next() {
					cols, err := rows.SliceScan()
					if err != nil {
						t.Fatal(err)
					}
					for _, c := range cols {
						switch v := c.(type) {
						case string:
							lines = append(lines, v)
						case []byte:
							lines = append(lines, string(v))
						}
					}
				}
				rows.Close()
				plan := strings.Join(lines, "\n")
				served := false
				for _, idx := range tt.indexes {
					served = served || strings.Contains(plan, idx)
				}
				if !served || strings.Contains(plan, "Seq Scan") || strings.Contains(plan, "TEMP B-TREE") {
					t.Errorf("filter %s is not served by %v:\n%s", name, tt.indexes, plan)
				}
				// A cursor must bound the index scan, not filter the rows it yields: the
				// plan shows the row comparison among the index's conditions.
				bounded := false
				for _, l := range lines {
					bounded = bounded || (strings.Contains(l, cond) && strings.Contains(l, bound))
				}
				if f.After != nil && !bounded {
					t.Errorf("filter %s does not start the index scan at the cursor (no %q in %q):\n%s", name, bound, cond, plan)
				}
			}
		})
	}
}
