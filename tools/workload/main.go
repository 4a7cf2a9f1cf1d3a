// Command workload plays an application pod that the azure-workload-identity mutating webhook has set
// up, so the node tests can show that what idbind arranges works for Azure's own SDK, not only for our
// clients: it reads one Key Vault secret with github.com/Azure/azure-sdk-for-go, unchanged, over and over.
//
// Configuration, all from the environment:
//
//	AZURE_CLIENT_ID, AZURE_TENANT_ID, AZURE_FEDERATED_TOKEN_FILE, AZURE_AUTHORITY_HOST
//	        as the webhook injects them; read by azidentity.NewWorkloadIdentityCredential itself
//	VAULT_URL       https://<vault>.vault.azure.net
//	SECRET_NAME     the secret to read (its latest version)
//	READ_INTERVAL   pause between attempts, a Go duration (default 2s)
//	SSL_CERT_FILE, HTTPS_PROXY
//	        the image carries no CA bundle and no proxy settings: the test pod mounts the simulator's CA
//	        and points these at it and at the simulator's proxy (Go's TLS and net/http read them)
//
// Each attempt prints exactly one JSON line on stdout, which the tests read with `kubectl logs`:
//
//	{"ok":true,"value":"<secret>","attempt":N}
//	{"ok":false,"status":403,"error":"<one line>","attempt":N}
//
// each with "tokenIssuedAt", the iat of the projected token the attempt used, so the tests see the
// kubelet rotate it.
//
// status is the HTTP status of Key Vault's answer, 401 when the credential got no token (a federated
// credential missing or not yet propagated), 0 when no answer came at all. The secret's value is printed
// on purpose: this is a test workload, its secret a fixed test string the tests compare.
//
// Every attempt builds a new credential and client and makes one try (SDK retries off): the SDK caches
// tokens per credential and retries failures, either of which would hide the moment a federated
// credential or a role assignment appears or goes. SIGTERM (or SIGINT) ends the loop with status 0, at
// once, even in the middle of an attempt, so a pod deletion takes no grace period.
package main

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/runtime"
	"github.com/Azure/azure-sdk-for-go/sdk/azidentity"
	"github.com/Azure/azure-sdk-for-go/sdk/security/keyvault/azsecrets"
)

type config struct {
	vaultURL, secretName string
	interval             time.Duration
}

// result is one attempt's line; the field order is the one documented above.
type result struct {
	OK      bool    `json:"ok"`
	Value   *string `json:"value,omitempty"`
	Status  *int    `json:"status,omitempty"`
	Error   string  `json:"error,omitempty"`
	Attempt int     `json:"attempt"`
	// TokenIssuedAt is the iat claim of the projected ServiceAccount token in AZURE_FEDERATED_TOKEN_FILE
	// when the attempt began (never the token itself): a new value shows the kubelet rotated it.
	TokenIssuedAt int64 `json:"tokenIssuedAt,omitempty"`
}

func main() {
	cfg, err := configFromEnv()
	if err != nil {
		fmt.Fprintln(os.Stderr, "workload:", err)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	out := json.NewEncoder(os.Stdout)
	out.SetEscapeHTML(false)
	for attempt := 1; ; attempt++ {
		issuedAt := tokenIssuedAt(os.Getenv("AZURE_FEDERATED_TOKEN_FILE"))
		r := read(ctx, cfg)
		r.TokenIssuedAt = issuedAt
		if ctx.Err() != nil {
			return // stopped mid-attempt: its outcome says nothing about Azure
		}
		r.Attempt = attempt
		if err := out.Encode(r); err != nil {
			fmt.Fprintln(os.Stderr, "workload: stdout:", err)
			os.Exit(1)
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(cfg.interval):
		}
	}
}

// tokenIssuedAt reads the iat claim of the JWT in file (its payload only; the signature is Entra's to
// check), or 0 when the file or claim cannot be read.
func tokenIssuedAt(file string) int64 {
	raw, err := os.ReadFile(file)
	if err != nil {
		return 0
	}
	parts := strings.Split(strings.TrimSpace(string(raw)), ".")
	if len(parts) != 3 {
		return 0
	}
	payload, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		return 0
	}
	var claims struct {
		IssuedAt int64 `json:"iat"`
	}
	if json.Unmarshal(payload, &claims) != nil {
		return 0
	}
	return claims.IssuedAt
}

func configFromEnv() (config, error) {
	cfg := config{vaultURL: os.Getenv("VAULT_URL"), secretName: os.Getenv("SECRET_NAME"), interval: 2 * time.Second}
	if cfg.vaultURL == "" || cfg.secretName == "" {
		return cfg, errors.New("VAULT_URL and SECRET_NAME must be set")
	}
	if s := os.Getenv("READ_INTERVAL"); s != "" {
		d, err := time.ParseDuration(s)
		if err != nil || d <= 0 {
			return cfg, fmt.Errorf("READ_INTERVAL=%q is not a positive duration such as 2s", s)
		}
		cfg.interval = d
	}
	return cfg, nil
}

// read makes one attempt with a credential and a client of its own, so nothing is cached across attempts.
func read(ctx context.Context, cfg config) result {
	// A negative MaxRetries means one try and no retries (azcore/policy.RetryOptions).
	once := azcore.ClientOptions{Retry: policy.RetryOptions{MaxRetries: -1}}
	cred, err := azidentity.NewWorkloadIdentityCredential(&azidentity.WorkloadIdentityCredentialOptions{ClientOptions: once})
	if err != nil {
		return failure(err)
	}
	client, err := azsecrets.NewClient(cfg.vaultURL, cred, &azsecrets.ClientOptions{ClientOptions: once})
	if err != nil {
		return failure(err)
	}
	resp, err := client.GetSecret(ctx, cfg.secretName, "", nil)
	if err != nil {
		return failure(err)
	}
	if resp.Value == nil {
		return result{Status: status(200), Error: "Key Vault returned the secret without a value"}
	}
	return result{OK: true, Value: resp.Value}
}

// failure turns an SDK error into a line: the credential's failures first (the bearer-token policy wraps
// them, and one may carry Entra's 400 response, yet for the workload it means "no token": 401), then Key
// Vault's answers with their status, and anything else (DNS, TLS, proxy) as status 0.
func failure(err error) result {
	var authErr *azidentity.AuthenticationFailedError
	var respErr *azcore.ResponseError
	switch {
	case errors.As(err, &authErr):
		return result{Status: status(401), Error: entraError(authErr)}
	case errors.As(err, &respErr):
		return result{Status: status(respErr.StatusCode), Error: describe(respErr)}
	default:
		return result{Status: status(0), Error: oneLine(err.Error())}
	}
}

// describe gives Key Vault's error as "Forbidden (ForbiddenByRbac): Caller is not authorized ...", from the
// body's error.code, error.innererror.code and error.message; the SDK's own text spans many lines.
func describe(e *azcore.ResponseError) string {
	var body struct {
		Error struct {
			Code       string `json:"code"`
			Message    string `json:"message"`
			InnerError struct {
				Code string `json:"code"`
			} `json:"innererror"`
		} `json:"error"`
	}
	if e.RawResponse != nil {
		if data, err := runtime.Payload(e.RawResponse); err == nil {
			_ = json.Unmarshal(data, &body)
		}
	}
	if body.Error.Code == "" {
		return oneLine(e.Error())
	}
	code := body.Error.Code
	if inner := body.Error.InnerError.Code; inner != "" {
		code += " (" + inner + ")"
	}
	return oneLine(code + ": " + body.Error.Message)
}

// entraError gives Entra's error_description ("AADSTS70021: No matching federated identity record found
// ..."), which says what is wrong; the SDK's text wraps it in the whole response and a troubleshooting link.
func entraError(e *azidentity.AuthenticationFailedError) string {
	var body struct {
		Description string `json:"error_description"`
	}
	if e.RawResponse != nil {
		if data, err := runtime.Payload(e.RawResponse); err == nil {
			_ = json.Unmarshal(data, &body)
		}
	}
	if body.Description == "" {
		return oneLine(e.Error())
	}
	return oneLine(body.Description)
}

// oneLine folds the SDK's multi-line messages (with their "-----" rules) into one line.
func oneLine(s string) string {
	var words []string
	for _, w := range strings.Fields(s) {
		if strings.Trim(w, "-") != "" {
			words = append(words, w)
		}
	}
	return strings.Join(words, " ")
}

func status(code int) *int { return &code }
