package admin_test

import (
	"fmt"

	"github.com/ory-ext-authz/ory-ext-authz/pkg/admin"
)

// Kratos' session and identity ids are UUIDs; anything else given as an id
// is logged only as a short hash, since it may be a credential pasted into
// the wrong field.
func ExampleIsUUID() {
	fmt.Println(admin.IsUUID("2f0b5d4e-8d0a-4c57-9c1e-3a7f6b1d9e20"))
	fmt.Println(admin.IsUUID("ory_st_not_an_id"))
	// Output:
	// true
	// false
}
