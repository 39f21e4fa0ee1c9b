package server

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"

	apikeys "github.com/qs/apikeys"
	"github.com/qs/apikeys/gen"
)

// maxValues bounds the JSON values a body may hold outside its metadata members. A batch of
// 100 keys with every field set holds about 1,500; each metadata member is bounded by its
// own size (apikeys.MaxMetadataBytes). Together they bound the tree the request validator
// builds from a body, whatever its bytes: a 1 MiB array of numbers is half a million values
// and some 30 MB of tree.
const maxValues = 5000

// maxDepth bounds the nesting outside metadata: a valid request nests 4 deep (a batch, its
// keys, a key, its scopes). Inside metadata the size bounds the depth.
const maxDepth = 16

// checkShape holds a body, already known to be one valid JSON value (apikeys.CheckJSONText),
// to the sizes no valid request exceeds, in one pass over its bytes and before anything
// decodes it: every member named metadata serialises (compacted) to at most
// apikeys.MaxMetadataBytes, and the body holds at most maxValues values outside them, nested
// at most maxDepth deep.
func checkShape(b []byte) error {
	type frame struct {
		object   bool
		wantName bool   // an object expecting a member name
		name     string // the member whose value comes next, or the current one
		index    int    // the array's current element
		meta     int    // offset of the metadata value this container opens, or -1
	}
	var (
		stack  []frame
		values int
		inMeta int // depth of metadata containers open
	)
	pointer := func() string {
		var sb strings.Builder
		for _, f := range stack {
			sb.WriteByte('/')
			if f.object {
				sb.WriteString(escapePointer(f.name))
			} else {
				sb.WriteString(strconv.Itoa(f.index))
			}
		}
		return sb.String()
	}
	tooLarge := func(field, detail string) error {
		return badRequest("the request body is larger than any valid request", fieldError(gen.Body, field, detail))
	}
	// value is called at the start of each value; it reports whether the value is a
	// metadata member's, and counts it.
	value := func() (bool, error) {
		isMeta := inMeta == 0 && len(stack) > 0 && stack[len(stack)-1].object && stack[len(stack)-1].name == "metadata"
		if inMeta == 0 && !isMeta {
			if values++; values > maxValues {
				return false, tooLarge("/", fmt.Sprintf("holds more than %d JSON values", maxValues))
			}
		}
		return isMeta, nil
	}
	for i := 0; i < len(b); {
		switch c := b[i]; c {
		case ' ', '\t', '\n', '\r', ':':
			i++
		case ',':
			if top := &stack[len(stack)-1]; top.object {
				top.wantName = true
			} else {
				top.index++
			}
			i++
		case '"':
			end := stringEnd(b, i)
			if n := len(stack); n > 0 && stack[n-1].object && stack[n-1].wantName {
				stack[n-1].name, stack[n-1].wantName = memberName(b[i:end]), false
			} else if _, err := value(); err != nil {
				return err
			}
			i = end
		case '{', '[':
			isMeta, err := value()
			if err != nil {
				return err
			}
			f := frame{object: c == '{', wantName: c == '{', meta: -1}
			if isMeta {
				f.meta = i
			}
			if isMeta || inMeta > 0 {
				inMeta++
			} else if len(stack)-inMeta >= maxDepth {
				return tooLarge("/", fmt.Sprintf("nests deeper than %d outside metadata", maxDepth))
			}
			stack = append(stack, f)
			i++
		case '}', ']':
			f := stack[len(stack)-1]
			stack = stack[:len(stack)-1]
			if inMeta > 0 {
				inMeta--
			}
			if f.meta >= 0 && compactLen(b[f.meta:i+1]) > apikeys.MaxMetadataBytes {
				return tooLarge(pointer(), // the parent's current member: metadata
					fmt.Sprintf("must serialise to at most %d bytes", apikeys.MaxMetadataBytes))
			}
			i++
		default: // a number, true, false or null
			if _, err := value(); err != nil {
				return err
			}
			for i < len(b) && !strings.ContainsRune(" \t\n\r,]}", rune(b[i])) {
				i++
			}
		}
	}
	return nil
}

// stringEnd returns the offset just after the string that starts at b[i].
func stringEnd(b []byte, i int) int {
	for j := i + 1; j < len(b); j++ {
		switch b[j] {
		case '\\':
			j++
		case '"':
			return j + 1
		}
	}
	return len(b)
}

// memberName decodes a quoted member name.
func memberName(quoted []byte) string {
	if !strings.ContainsRune(string(quoted), '\\') {
		return string(quoted[1 : len(quoted)-1])
	}
	var s string
	_ = json.Unmarshal(quoted, &s)
	return s
}

// compactLen is the length of a JSON text without its insignificant whitespace, as
// json.Compact would write it.
func compactLen(b []byte) int {
	n, inString := 0, false
	for i := 0; i < len(b); i++ {
		c := b[i]
		switch {
		case inString && c == '\\':
			n += 2
			i++
			continue
		case c == '"':
			inString = !inString
		case !inString && (c == ' ' || c == '\t' || c == '\n' || c == '\r'):
			continue
		}
		n++
	}
	return n
}
