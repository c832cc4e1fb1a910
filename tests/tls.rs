//! TLS: `https://` URLs verify certificates; `ca_file` trusts a private CA, tested through a
//! TLS-terminating proxy (socat) in front of a real sqld, with a CA made by the test.

mod common;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{db_error, free_port, get_changes, pg, Sqld};
use serde_json::json;

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A CA and a server certificate for 127.0.0.1/localhost signed by it.
fn make_certs(dir: &Path) {
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
            "-days",
            "2",
            "-subj",
            "/CN=pgturso test CA",
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign",
        ],
    );
    openssl(
        dir,
        &[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "server.key",
            "-out",
            "server.csr",
            "-subj",
            "/CN=localhost",
        ],
    );
    std::fs::write(
        dir.join("ext"),
        "subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "server.pem",
            "-days",
            "2",
            "-extfile",
            "ext",
        ],
    );
}

struct Socat(Child);

impl Drop for Socat {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn tls_proxy(dir: &Path, upstream: u16) -> (Socat, u16) {
    let port = free_port();
    let child = Command::new("socat")
        .arg(format!(
            "OPENSSL-LISTEN:{port},bind=127.0.0.1,reuseaddr,fork,cert={},key={},verify=0",
            dir.join("server.pem").display(),
            dir.join("server.key").display()
        ))
        .arg(format!("TCP:127.0.0.1:{upstream}"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("socat is installed by scripts/setup.sh");
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "socat did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    (Socat(child), port)
}

#[test]
fn https_verifies_certificates_and_ca_file_trusts_a_private_ca() {
    let sqld = Sqld::start("tls", true);
    make_certs(&sqld.dir);
    let (_socat, port) = tls_proxy(&sqld.dir, sqld.port);
    let mut c = pg().fresh_db("tls");
    c.batch_execute(
        "SELECT pg_create_logical_replication_slot('slot_tls', 'pgturso');
         CREATE TABLE t(id int primary key, v text);
         INSERT INTO t VALUES (1, 'over tls')",
    )
    .unwrap();
    let https = format!("https://127.0.0.1:{port}/");
    let ca = sqld.dir.join("ca.pem").display().to_string();
    let token = sqld.token().to_string();
    // Without the CA: the certificate is not trusted; a clean error, nothing applied.
    let err = get_changes(
        &mut c,
        "slot_tls",
        &[("url", &https), ("auth", &token), ("retry_ms", "0")],
    )
    .unwrap_err();
    let (code, msg, _, _) = db_error(&err);
    assert_eq!(code, "08006", "{msg}");
    assert!(msg.to_lowercase().contains("certificate"), "{msg}");
    // A CA file that cannot be read.
    let err = get_changes(
        &mut c,
        "slot_tls",
        &[
            ("url", &https),
            ("auth", &token),
            ("ca_file", "/nonexistent/ca.pem"),
        ],
    )
    .unwrap_err();
    let (code, msg, _, hint) = db_error(&err);
    assert_eq!(code, "22023", "{msg}");
    assert!(
        msg.contains("could not read CA file \"/nonexistent/ca.pem\""),
        "{msg}"
    );
    assert!(hint.contains("ca_file"), "{hint}");
    // https:// to sqld's plain-http port: a clean connection error.
    let plain = format!("https://127.0.0.1:{}/", sqld.port);
    let err = get_changes(
        &mut c,
        "slot_tls",
        &[
            ("url", &plain),
            ("auth", &token),
            ("ca_file", &ca),
            ("retry_ms", "0"),
        ],
    )
    .unwrap_err();
    assert_eq!(db_error(&err).0, "08006");
    // With the CA: replicated over TLS.
    let out = get_changes(
        &mut c,
        "slot_tls",
        &[("url", &https), ("auth", &token), ("ca_file", &ca)],
    )
    .unwrap();
    assert_eq!(out.len(), 1);
    assert_eq!(
        sqld.query("SELECT id, v FROM t"),
        vec![vec![json!(1), json!("over tls")]]
    );
}
