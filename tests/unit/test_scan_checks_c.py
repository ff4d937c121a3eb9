# ruff: noqa: E501  (table-driven cases: one case per line)
"""Labelled bad/good C functions per CWE: the bad one is flagged with its CWE, its fixed twin is not."""

from __future__ import annotations

from pathlib import Path

import pytest

from trustroot.scan.checks import run_tree

# (case, CWE, bad source, good source)
CASES: list[tuple[str, int, str, str]] = [
    ("cwe259-define-strcpy", 259,
     '#define PASSWORD "ABCD1234!"\nvoid f(void){ char pw[100]=""; char *p=pw; HANDLE h;\n'
     '  strcpy(p, PASSWORD);\n  LogonUserA("u", "d", p, 2, 0, &h); }\n',
     'void f(void){ char pw[100]=""; char *p=pw; HANDLE h;\n  fgets(p, 100, stdin);\n'
     '  LogonUserA("u", "d", p, 2, 0, &h); }\n'),
    ("cwe259-mysql-literal", 259,
     'void f(MYSQL *m){ mysql_real_connect(m, "db", "app", "s3cret", "iot", 0, NULL, 0); }\n',
     'void f(MYSQL *m, const char *pw){ mysql_real_connect(m, "db", "app", pw, "iot", 0, NULL, 0); }\n'),
    ("cwe259-across-functions", 259,
     'static void sink(char *pw){ ssh_userauth_password(s, NULL, pw); }\n'
     'void f(void){ char b[32]; strcpy(b, "root123"); sink(b); }\n',
     'static void sink(char *pw){ ssh_userauth_password(s, NULL, pw); }\n'
     'void f(void){ char b[32]; read_secret(b, sizeof b); sink(b); }\n'),
    ("cwe798-mqtt-options", 798,
     'void f(void){ MQTTClient_connectOptions o = MQTTClient_connectOptions_initializer;\n'
     '  o.username = "dev"; o.password = "mqtt-pass-1"; MQTTClient_connect(c, &o); }\n',
     'void f(const char *pw){ MQTTClient_connectOptions o = MQTTClient_connectOptions_initializer;\n'
     '  o.username = "dev"; o.password = pw; MQTTClient_connect(c, &o); }\n'),
    ("cwe798-curl-userpwd", 798,
     'void f(CURL *h){ curl_easy_setopt(h, CURLOPT_USERPWD, "admin:admin"); }\n',
     'void f(CURL *h, const char *up){ curl_easy_setopt(h, CURLOPT_USERPWD, up); }\n'),
    ("cwe321-aes-key", 321,
     'static const unsigned char k[] = "0123456789abcdef";\nvoid f(AES_KEY *a){ AES_set_encrypt_key(k, 128, a); }\n',
     'void f(AES_KEY *a){ unsigned char k[16]; load_key(k); AES_set_encrypt_key(k, 128, a); }\n'),
    ("cwe321-mbedtls-key", 321,
     '#define KEY "supersecretkey!!"\nvoid f(mbedtls_aes_context *c){ mbedtls_aes_setkey_enc(c, (const unsigned char *)KEY, 128); }\n',
     'void f(mbedtls_aes_context *c, const unsigned char *k){ mbedtls_aes_setkey_enc(c, k, 128); }\n'),
    ("cwe321-wolfssl-hmac", 321,
     'void f(Hmac *h){ wc_HmacSetKey(h, WC_SHA256, (const byte*)"hmac-key-123", 12); }\n',
     'void f(Hmac *h, const byte *k, word32 n){ wc_HmacSetKey(h, WC_SHA256, k, n); }\n'),
    ("cwe256-file-password", 256,
     'void f(void){ char pw[100]; FILE *fp = fopen("pw.txt","r"); HANDLE h;\n  fgets(pw, 100, fp);\n'
     '  LogonUserA("u", "d", pw, 2, 0, &h); }\n',
     'void f(void){ char pw[100]; FILE *fp = fopen("pw.txt","r"); HANDLE h;\n  fgets(pw, 100, fp);\n'
     '  CryptDecrypt(k, 0, 1, 0, (BYTE*)pw, &n);\n  LogonUserA("u", "d", pw, 2, 0, &h); }\n'),
    ("cwe319-network-password", 319,
     'void f(int s){ char pw[100]; recv(s, pw, 99, 0); ldap_simple_bind_s(ld, "cn=admin", pw); }\n',
     'void f(SSL *t){ char pw[100]; SSL_read(t, pw, 99); ldap_simple_bind_s(ld, "cn=admin", pw); }\n'),
    ("cwe327-des", 327,
     'const EVP_CIPHER *c(void){ return EVP_des_cbc(); }\n',
     'const EVP_CIPHER *c(void){ return EVP_aes_256_gcm(); }\n'),
    ("cwe327-ecb", 327,
     'void f(mbedtls_aes_context *a, unsigned char *b){ mbedtls_aes_crypt_ecb(a, MBEDTLS_AES_ENCRYPT, b, b); }\n',
     'void f(mbedtls_gcm_context *g){ mbedtls_gcm_starts(g, MBEDTLS_GCM_ENCRYPT, iv, 12); }\n'),
    ("cwe327-old-method", 327,
     'SSL_CTX *c(void){ return SSL_CTX_new(SSLv3_method()); }\n',
     'SSL_CTX *c(void){ SSL_CTX *x = SSL_CTX_new(TLS_method()); SSL_CTX_set_min_proto_version(x, TLS1_2_VERSION); return x; }\n'),
    ("cwe326-min-proto", 326,
     'void c(SSL_CTX *x){ SSL_CTX_set_min_proto_version(x, TLS1_VERSION); }\n',
     'void c(SSL_CTX *x){ SSL_CTX_set_min_proto_version(x, TLS1_3_VERSION); }\n'),
    ("cwe328-md5", 328,
     'void h(const unsigned char *d, size_t n, unsigned char *o){ MD5(d, n, o); }\n',
     'void h(const unsigned char *d, size_t n, unsigned char *o){ SHA256(d, n, o); }\n'),
    ("cwe328-sha1-mbedtls", 328,
     'void h(const unsigned char *d, size_t n, unsigned char *o){ mbedtls_sha1(d, n, o); }\n',
     'void h(const unsigned char *d, size_t n, unsigned char *o){ mbedtls_sha256(d, n, o, 0); }\n'),
    ("cwe295-verify-none", 295,
     'void v(SSL_CTX *x){ SSL_CTX_set_verify(x, SSL_VERIFY_NONE, NULL); }\n',
     'void v(SSL_CTX *x){ SSL_CTX_set_verify(x, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, NULL); }\n'),
    ("cwe295-mbedtls-optional", 295,
     'void v(mbedtls_ssl_config *c){ mbedtls_ssl_conf_authmode(c, MBEDTLS_SSL_VERIFY_OPTIONAL); }\n',
     'void v(mbedtls_ssl_config *c){ mbedtls_ssl_conf_authmode(c, MBEDTLS_SSL_VERIFY_REQUIRED); }\n'),
    ("cwe295-wolfssl", 295,
     'void v(WOLFSSL_CTX *c){ wolfSSL_CTX_set_verify(c, WOLFSSL_VERIFY_NONE, 0); }\n',
     'void v(WOLFSSL_CTX *c){ wolfSSL_CTX_set_verify(c, WOLFSSL_VERIFY_PEER, 0); }\n'),
    ("cwe295-curl", 295,
     'void v(CURL *h){ curl_easy_setopt(h, CURLOPT_SSL_VERIFYPEER, 0L); }\n',
     'void v(CURL *h){ curl_easy_setopt(h, CURLOPT_SSL_VERIFYPEER, 1L); }\n'),
    ("cwe338-rand-key", 338,
     'void k(unsigned char *key){ for (int i = 0; i < 16; i++) key[i] = rand(); }\n',
     'void k(unsigned char *key){ getrandom(key, 16, 0); }\n'),
    ("cwe330-srand", 330,
     'void seed_nonce(void){ srand(time(NULL)); nonce = random(); }\n',
     'void seed_nonce(void){ RAND_bytes((unsigned char *)&nonce, sizeof nonce); }\n'),
]  # fmt: skip


def _cwes(tmp_path: Path, name: str, source: str) -> set[int]:
    root = tmp_path / name
    root.mkdir()
    (root / "case.c").write_text(source)
    return {c for f in run_tree(root) for c in f.cwe}


@pytest.mark.parametrize(("case", "cwe", "bad", "good"), CASES, ids=[c[0] for c in CASES])
def test_bad_flagged_good_clean(tmp_path: Path, case: str, cwe: int, bad: str, good: str) -> None:
    assert cwe in _cwes(tmp_path, "bad", bad), f"{case}: bad function not flagged with CWE-{cwe}"
    assert cwe not in _cwes(tmp_path, "good", good), f"{case}: fixed twin flagged with CWE-{cwe}"


def test_comments_and_log_strings_are_not_findings(tmp_path: Path) -> None:
    src = (
        "/* never call SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, 0) or MD5() */\n"
        'void f(void){ log("SSLv3_method and rand() are banned"); // EVP_des_cbc\n}\n'
    )
    assert _cwes(tmp_path, "c", src) == set()


def test_snippet_masks_the_literal(tmp_path: Path) -> None:
    root = tmp_path / "m"
    root.mkdir()
    (root / "m.c").write_text('void f(MYSQL *m){ mysql_real_connect(m, "db", "app", "Tr0ub4dor&3", "x", 0, 0, 0); }\n')
    findings = run_tree(root)
    assert findings
    for f in findings:
        assert "Tr0ub4dor&3" not in f.snippet + f.message
        assert f.engines == ["trustroot"]
        assert f.location.path == "m.c" and f.location.line == 1


INJECTION: list[tuple[str, int, str, str]] = [
    ("cwe78-console-system", 78,
     "void f(void){ char cmd[100] = \"ls \"; fgets(cmd + 3, 90, stdin); system(cmd); }\n",
     "void f(void){ char cmd[100] = \"ls \"; strcat(cmd, \"*.*\"); system(cmd); }\n"),
    ("cwe78-env-macro-exec", 78,
     "#define ARG data\n#define EXECL execl\nvoid f(void){ char data[64]; char *e = getenv(\"X\"); strcpy(data, e);\n"
     "  EXECL(\"/bin/sh\", \"sh\", \"-c\", ARG, NULL); }\n",
     "#define ARG data\n#define EXECL execl\nvoid f(void){ char data[64] = \"date\";\n"
     "  EXECL(\"/bin/sh\", \"sh\", \"-c\", ARG, NULL); }\n"),
    ("cwe78-network-built-command", 78,
     "void f(int s){ char h[64], c[128]; recv(s, h, 63, 0); snprintf(c, sizeof c, \"ping %s\", h); system(c); }\n",
     "void f(int s){ char h[64], c[128]; recv(s, h, 63, 0); snprintf(c, sizeof c, \"ping %s\", \"gw\"); system(c); }\n"),
    ("cwe134-network-printf", 134,
     "void f(int s){ char b[100]; recv(s, b, 99, 0); printf(b); }\n",
     "void f(int s){ char b[100]; recv(s, b, 99, 0); printf(\"%s\", b); }\n"),
    ("cwe134-across-functions", 134,
     "static void sink(char *d){ fprintf(stderr, d); }\nvoid f(void){ char b[100]; fgets(b, 100, stdin); sink(b); }\n",
     "static void sink(char *d){ fprintf(stderr, \"%s\", d); }\nvoid f(void){ char b[100]; fgets(b, 100, stdin); sink(b); }\n"),
]  # fmt: skip


@pytest.mark.parametrize(("case", "cwe", "bad", "good"), INJECTION, ids=[c[0] for c in INJECTION])
def test_injection(tmp_path: Path, case: str, cwe: int, bad: str, good: str) -> None:
    assert cwe in _cwes(tmp_path, "bad", bad), f"{case}: bad function not flagged with CWE-{cwe}"
    assert cwe not in _cwes(tmp_path, "good", good), f"{case}: fixed twin flagged with CWE-{cwe}"


def test_crlf_sources_are_read_like_lf(tmp_path: Path) -> None:
    src = "#define CMD data\r\nvoid f(void){ char data[9];\r\n  gets(data);\r\n  system(CMD); }\r\n"
    root = tmp_path / "crlf"
    root.mkdir()
    (root / "c.c").write_bytes(src.encode())
    [f] = [f for f in run_tree(root) if 78 in f.cwe]
    assert f.location.line == 4
