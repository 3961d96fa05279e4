//go:build cgo && linux

package auth

/*
#cgo LDFLAGS: -ldl
// PAM is loaded at run time from libpam.so.0 (Debian's essential libpam0g),
// so the build needs no PAM headers (libpam0g-dev). The declarations below are
// the Linux-PAM ABI: its constants and structure layouts.
#include <dlfcn.h>
#include <stdlib.h>
#include <string.h>

#define EDGE_PAM_SUCCESS 0
#define EDGE_PAM_BUF_ERR 5
#define EDGE_PAM_CONV_ERR 19
#define EDGE_PAM_PROMPT_ECHO_OFF 1
#define EDGE_PAM_PROMPT_ECHO_ON 2
#define EDGE_PAM_SILENT 0x8000
#define EDGE_PAM_DISALLOW_NULL_AUTHTOK 0x0001
#define EDGE_PAM_MAX_NUM_MSG 32
#define EDGE_PAM_NOT_LOADED (-1)

struct edge_pam_message { int msg_style; const char *msg; };
struct edge_pam_response { char *resp; int resp_retcode; };
struct edge_pam_conv {
	int (*conv)(int, const struct edge_pam_message **, struct edge_pam_response **, void *);
	void *appdata_ptr;
};

typedef int (*edge_pam_start_fn)(const char *, const char *, const struct edge_pam_conv *, void **);
typedef int (*edge_pam_int_fn)(void *, int);
typedef const char *(*edge_pam_strerror_fn)(void *, int);

static edge_pam_start_fn edge_pam_start;
static edge_pam_int_fn edge_pam_authenticate, edge_pam_acct_mgmt, edge_pam_end;
static edge_pam_strerror_fn edge_pam_strerror_p;

// edge_pam_load resolves the five PAM calls once; 0 on success.
static int edge_pam_load(void) {
	if (edge_pam_start != NULL) return 0;
	void *lib = dlopen("libpam.so.0", RTLD_NOW | RTLD_GLOBAL);
	if (lib == NULL) return -1;
	edge_pam_authenticate = (edge_pam_int_fn)dlsym(lib, "pam_authenticate");
	edge_pam_acct_mgmt = (edge_pam_int_fn)dlsym(lib, "pam_acct_mgmt");
	edge_pam_end = (edge_pam_int_fn)dlsym(lib, "pam_end");
	edge_pam_strerror_p = (edge_pam_strerror_fn)dlsym(lib, "pam_strerror");
	edge_pam_start_fn start = (edge_pam_start_fn)dlsym(lib, "pam_start");
	if (!edge_pam_authenticate || !edge_pam_acct_mgmt || !edge_pam_end || !edge_pam_strerror_p || !start) return -2;
	edge_pam_start = start;
	return 0;
}

// edge_pam_conv answers every prompt with the password in appdata.
static int edge_pam_conv(int n, const struct edge_pam_message **msg, struct edge_pam_response **resp, void *appdata) {
	if (n <= 0 || n > EDGE_PAM_MAX_NUM_MSG) return EDGE_PAM_CONV_ERR;
	struct edge_pam_response *r = calloc((size_t)n, sizeof(struct edge_pam_response));
	if (r == NULL) return EDGE_PAM_BUF_ERR;
	for (int i = 0; i < n; i++) {
		switch (msg[i]->msg_style) {
		case EDGE_PAM_PROMPT_ECHO_OFF:
		case EDGE_PAM_PROMPT_ECHO_ON:
			r[i].resp = strdup((const char *)appdata);
			if (r[i].resp == NULL) {
				for (int j = 0; j < i; j++) {
					if (r[j].resp) { memset(r[j].resp, 0, strlen(r[j].resp)); free(r[j].resp); }
				}
				free(r);
				return EDGE_PAM_BUF_ERR;
			}
			break;
		default:
			break;
		}
	}
	*resp = r;
	return EDGE_PAM_SUCCESS;
}

static int edge_pam_check(const char *service, const char *user, const char *password, int acct) {
	if (edge_pam_load() != 0) return EDGE_PAM_NOT_LOADED;
	struct edge_pam_conv conv = { edge_pam_conv, (void *)password };
	void *h = NULL;
	int rc = edge_pam_start(service, user, &conv, &h);
	if (rc != EDGE_PAM_SUCCESS) return rc;
	rc = edge_pam_authenticate(h, EDGE_PAM_SILENT | EDGE_PAM_DISALLOW_NULL_AUTHTOK);
	if (rc == EDGE_PAM_SUCCESS && acct) rc = edge_pam_acct_mgmt(h, EDGE_PAM_SILENT | EDGE_PAM_DISALLOW_NULL_AUTHTOK);
	edge_pam_end(h, rc);
	return rc;
}

static const char *edge_pam_strerror(int rc) {
	if (edge_pam_strerror_p == NULL) return "PAM is not available";
	return edge_pam_strerror_p(NULL, rc);
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

var errPAMNotLoaded = errors.New("libpam.so.0 cannot be loaded (install libpam0g)")

// pamLoad loads libpam.so.0; a pam module is refused at configuration time
// when it cannot be loaded.
func pamLoad() error {
	if C.edge_pam_load() != 0 {
		return errPAMNotLoaded
	}
	return nil
}

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
	if rc == C.EDGE_PAM_NOT_LOADED {
		return errPAMNotLoaded
	}
	if rc != C.EDGE_PAM_SUCCESS {
		return fmt.Errorf("%s", C.GoString(C.edge_pam_strerror(rc)))
	}
	return nil
}
