//go:build cgo && linux

package auth

/*
#cgo LDFLAGS: -lpam
#include <security/pam_appl.h>
#include <stdlib.h>
#include <string.h>

// edge_pam_conv answers every prompt with the password in appdata.
static int edge_pam_conv(int n, const struct pam_message **msg, struct pam_response **resp, void *appdata) {
	if (n <= 0 || n > PAM_MAX_NUM_MSG) return PAM_CONV_ERR;
	struct pam_response *r = calloc((size_t)n, sizeof(struct pam_response));
	if (r == NULL) return PAM_BUF_ERR;
	for (int i = 0; i < n; i++) {
		switch (msg[i]->msg_style) {
		case PAM_PROMPT_ECHO_OFF:
		case PAM_PROMPT_ECHO_ON:
			r[i].resp = strdup((const char *)appdata);
			if (r[i].resp == NULL) {
				for (int j = 0; j < i; j++) {
					if (r[j].resp) { memset(r[j].resp, 0, strlen(r[j].resp)); free(r[j].resp); }
				}
				free(r);
				return PAM_BUF_ERR;
			}
			break;
		default:
			break;
		}
	}
	*resp = r;
	return PAM_SUCCESS;
}

static int edge_pam_check(const char *service, const char *user, const char *password, int acct) {
	struct pam_conv conv = { edge_pam_conv, (void *)password };
	pam_handle_t *h = NULL;
	int rc = pam_start(service, user, &conv, &h);
	if (rc != PAM_SUCCESS) return rc;
	rc = pam_authenticate(h, PAM_SILENT | PAM_DISALLOW_NULL_AUTHTOK);
	if (rc == PAM_SUCCESS && acct) rc = pam_acct_mgmt(h, PAM_SILENT | PAM_DISALLOW_NULL_AUTHTOK);
	pam_end(h, rc);
	return rc;
}

static const char *edge_pam_strerror(int rc) {
	return pam_strerror(NULL, rc);
}
*/
import "C"

import (
	"bytes"
	"errors"
	"fmt"
	"unsafe"
)

const pamAvailable = true

// pamCheck runs pam_authenticate (and pam_acct_mgmt) for user with
// password. The C copy of the password is wiped before it is freed.
func pamCheck(service, user string, password []byte, checkAccount bool) error {
	if bytes.IndexByte(password, 0) >= 0 || bytes.IndexByte([]byte(user), 0) >= 0 || bytes.IndexByte([]byte(service), 0) >= 0 {
		return errors.New("a NUL byte in the credentials")
	}
	cs := C.CString(service)
	defer C.free(unsafe.Pointer(cs))
	cu := C.CString(user)
	defer C.free(unsafe.Pointer(cu))
	cp := (*C.char)(C.calloc(C.size_t(len(password)+1), 1))
	if cp == nil {
		return errors.New("out of memory")
	}
	defer func() {
		C.memset(unsafe.Pointer(cp), 0, C.size_t(len(password)+1))
		C.free(unsafe.Pointer(cp))
	}()
	if len(password) > 0 {
		C.memcpy(unsafe.Pointer(cp), unsafe.Pointer(&password[0]), C.size_t(len(password)))
	}
	acct := C.int(0)
	if checkAccount {
		acct = 1
	}
	rc := C.edge_pam_check(cs, cu, cp, acct)
	if rc != C.PAM_SUCCESS {
		return fmt.Errorf("%s", C.GoString(C.edge_pam_strerror(rc)))
	}
	return nil
}
