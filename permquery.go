package apikeys

import (
	"fmt"
	"strings"
)

// PermissionQuery is a parsed permission query of a verification: permission names joined by
// AND and OR, grouped by parentheses, AND binding tighter than OR:
//
//	query  = or
//	or     = and { "OR" and }
//	and    = factor { "AND" factor }
//	factor = permission | "(" or ")"
//
// Keywords are upper case and separated from names by white space or parentheses. A query is
// at most 1,000 bytes and nests at most 32 parentheses deep.
type PermissionQuery struct {
	root *permNode
}

type permNode struct {
	name     string // a leaf when ops is empty
	and      bool   // the children are ANDed (else ORed)
	children []*permNode
}

// Empty reports whether the query asks for nothing (the zero value).
func (q PermissionQuery) Empty() bool { return q.root == nil }

// SatisfiedBy reports whether perms (a key's own and its roles') satisfy the query. The empty
// query is satisfied by anything.
func (q PermissionQuery) SatisfiedBy(perms []string) bool {
	return q.root == nil || q.root.eval(perms)
}

func (n *permNode) eval(perms []string) bool {
	if n.children == nil {
		return HoldsPermission(perms, n.name)
	}
	for _, c := range n.children {
		if c.eval(perms) == !n.and {
			return !n.and
		}
	}
	return n.and
}

// String renders the query fully parenthesised, for tests and logs.
func (q PermissionQuery) String() string {
	if q.root == nil {
		return ""
	}
	var b strings.Builder
	q.root.write(&b)
	return b.String()
}

func (n *permNode) write(b *strings.Builder) {
	if n.children == nil {
		b.WriteString(n.name)
		return
	}
	op := " OR "
	if n.and {
		op = " AND "
	}
	b.WriteByte('(')
	for i, c := range n.children {
		if i > 0 {
			b.WriteString(op)
		}
		c.write(b)
	}
	b.WriteByte(')')
}

// permToken is one token of a query: a name, a keyword or a parenthesis, at its byte offset.
type permToken struct {
	text string
	pos  int
}

// ParsePermissionQuery parses a query. A query it cannot parse is EINVALID with a detail
// naming the position (1-based, in bytes) of the fault.
func ParsePermissionQuery(s string) (PermissionQuery, error) {
	if len(s) > MaxPermissionQuery {
		return PermissionQuery{}, Invalid(fmt.Sprintf("must be at most %d bytes long", MaxPermissionQuery))
	}
	toks, err := lexPermissions(s)
	if err != nil {
		return PermissionQuery{}, err
	}
	if len(toks) == 0 {
		return PermissionQuery{}, Invalid("must name at least one permission")
	}
	p := &permParser{toks: toks, end: len(s) + 1}
	root, err := p.or(0)
	if err != nil {
		return PermissionQuery{}, err
	}
	if p.i < len(p.toks) {
		t := p.toks[p.i]
		return PermissionQuery{}, p.fault(t.pos, fmt.Sprintf("unexpected %q", t.text))
	}
	return PermissionQuery{root: root}, nil
}

func lexPermissions(s string) ([]permToken, error) {
	toks := make([]permToken, 0, 8)
	for i := 0; i < len(s); {
		c := s[i]
		switch {
		case c == ' ' || c == '\t' || c == '\n' || c == '\r':
			i++
		case c == '(' || c == ')':
			toks = append(toks, permToken{text: s[i : i+1], pos: i + 1})
			i++
		case isPermByte(c):
			j := i
			for j < len(s) && isPermByte(s[j]) {
				j++
			}
			toks = append(toks, permToken{text: s[i:j], pos: i + 1})
			i = j
		default:
			return nil, Invalid(fmt.Sprintf("position %d: %q cannot appear in a permission query", i+1, rune(c)))
		}
	}
	return toks, nil
}

func isPermByte(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' ||
		c == '_' || c == '.' || c == ':' || c == '-' || c == '*'
}

type permParser struct {
	toks []permToken
	i    int
	end  int // the position just past the query, for "expected … at the end"
}

func (p *permParser) fault(pos int, what string) error {
	return Invalid(fmt.Sprintf("position %d: %s", pos, what))
}

func (p *permParser) peek() (permToken, bool) {
	if p.i < len(p.toks) {
		return p.toks[p.i], true
	}
	return permToken{}, false
}

func (p *permParser) or(depth int) (*permNode, error) {
	return p.chain(depth, "OR", false, p.and)
}

func (p *permParser) and(depth int) (*permNode, error) {
	return p.chain(depth, "AND", true, p.factor)
}

// chain parses operand { keyword operand }.
func (p *permParser) chain(depth int, keyword string, and bool, operand func(int) (*permNode, error)) (*permNode, error) {
	first, err := operand(depth)
	if err != nil {
		return nil, err
	}
	var n *permNode // made only when a keyword follows: most operands stand alone
	for {
		t, ok := p.peek()
		if !ok || t.text != keyword {
			break
		}
		if n == nil {
			n = &permNode{and: and, children: make([]*permNode, 1, 4)}
			n.children[0] = first
		}
		p.i++
		next, err := operand(depth)
		if err != nil {
			return nil, err
		}
		n.children = append(n.children, next)
	}
	if n == nil {
		return first, nil
	}
	return n, nil
}

func (p *permParser) factor(depth int) (*permNode, error) {
	t, ok := p.peek()
	if !ok {
		return nil, p.fault(p.end, "expected a permission or \"(\" at the end of the query")
	}
	switch t.text {
	case "(":
		if depth >= maxPermissionNested {
			return nil, p.fault(t.pos, fmt.Sprintf("parentheses nest more than %d deep", maxPermissionNested))
		}
		p.i++
		n, err := p.or(depth + 1)
		if err != nil {
			return nil, err
		}
		c, ok := p.peek()
		if !ok {
			return nil, p.fault(p.end, fmt.Sprintf("the \"(\" at position %d is not closed", t.pos))
		}
		if c.text != ")" {
			return nil, p.fault(c.pos, fmt.Sprintf("expected AND, OR or \")\", found %q", c.text))
		}
		p.i++
		return n, nil
	case ")", "AND", "OR":
		return nil, p.fault(t.pos, fmt.Sprintf("expected a permission or \"(\", found %q", t.text))
	}
	if _, err := ParsePermission(t.text); err != nil || strings.EqualFold(t.text, "and") || strings.EqualFold(t.text, "or") {
		return nil, p.fault(t.pos, fmt.Sprintf("%q is not a permission (letters, digits and _ . : - , optionally ending in *; AND and OR in capitals)", t.text))
	}
	p.i++
	return &permNode{name: t.text}, nil
}
