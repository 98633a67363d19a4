use std::path::Path;
use std::process::Command;

use crate::support::*;

/// Every file the Dockerfile copies from the build context exists in the repository, and the
/// compose file builds that Dockerfile with an env file we ship an example of. (No Docker
/// engine runs here, so this is what can be checked.)
#[test]
fn the_dockerfile_and_compose_file_reference_what_exists() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let docker = std::fs::read_to_string(root.join("Dockerfile.alpine")).unwrap();
    let mut copies = 0;
    for line in docker
        .lines()
        .map(str::trim)
        .filter(|l| l.starts_with("COPY ") && !l.contains("--from="))
    {
        let parts: Vec<&str> = line.split_whitespace().skip(1).collect();
        for src in &parts[..parts.len() - 1] {
            assert!(
                root.join(src).exists(),
                "Dockerfile.alpine copies {src}, which does not exist"
            );
            copies += 1;
        }
    }
    assert!(copies >= 4, "the build stage copies the sources");
    // Everything the build reads outside src/ is copied too: embedded folders, included
    // files and patched crates (openapi.yaml and assets/ were once missing).
    let copied: Vec<&str> = docker
        .lines()
        .filter(|l| l.starts_with("COPY ") && !l.contains("--from="))
        .flat_map(|l| {
            let parts: Vec<&str> = l.split_whitespace().skip(1).collect();
            parts[..parts.len() - 1].to_vec()
        })
        .collect();
    let mut inputs = vec!["src".to_string()];
    let mut rs = vec![root.join("src")];
    while let Some(p) = rs.pop() {
        if p.is_dir() {
            rs.extend(std::fs::read_dir(&p).unwrap().map(|e| e.unwrap().path()));
            continue;
        }
        let text = std::fs::read_to_string(&p).unwrap_or_default();
        for (start, end) in [("#[folder = \"", "\""), ("include_str!(\"", "\")")] {
            for piece in text.split(start).skip(1) {
                let rel = &piece[..piece.find(end).unwrap()];
                let path = if start.starts_with("#") {
                    root.join(rel)
                } else {
                    p.parent().unwrap().join(rel)
                };
                let path = path.canonicalize().unwrap();
                let rel = path.strip_prefix(root.canonicalize().unwrap()).unwrap();
                inputs.push(rel.to_string_lossy().into_owned());
            }
        }
    }
    let manifest = std::fs::read_to_string(root.join("Cargo.toml")).unwrap();
    for piece in manifest.split("path = \"").skip(1) {
        inputs.push(piece[..piece.find('"').unwrap()].to_string());
    }
    for input in &inputs {
        assert!(
            copied
                .iter()
                .any(|c| Path::new(input).starts_with(c.trim_end_matches('/'))),
            "the Docker build needs {input}, which Dockerfile.alpine does not copy"
        );
    }
    assert!(docker.contains("HEALTHCHECK") && docker.contains("claudeway\", \"healthcheck\""));
    assert!(docker.contains("USER claudeway"), "runs as a non-root user");
    let compose = std::fs::read_to_string(root.join("docker-compose.yml")).unwrap();
    assert!(compose.contains("dockerfile: Dockerfile.alpine"));
    assert!(compose.contains("env_file: .env"));
    let example = std::fs::read_to_string(root.join(".env.example")).unwrap();
    assert!(example.contains("WRAPPER_KEYS="));
}

#[test]
fn the_healthcheck_subcommand_probes_a_running_server() {
    let srv = TestServer::start();
    let port = srv.addr.port().to_string();
    let out = Command::new(env!("CARGO_BIN_EXE_claudeway"))
        .args(["healthcheck", "--port", &port, "--host", "127.0.0.1"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "ok");
    drop(srv);
    // A freed port may be taken at once by another test's server, so the failures are probed
    // where they are certain: a port nothing can listen on (connecting to port 0 is refused
    // on Linux), and a listener of ours that reads the request and closes without answering.
    let probe = |port: &str| {
        Command::new(env!("CARGO_BIN_EXE_claudeway"))
            .args(["healthcheck", "--port", port])
            .output()
            .unwrap()
    };
    let out = probe("0");
    assert_eq!(out.status.code(), Some(2), "nothing listens");
    assert!(String::from_utf8_lossy(&out.stderr).starts_with("error: healthcheck: cannot connect"));
    let mute = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = mute.local_addr().unwrap().port().to_string();
    // It reads the request, then closes without a word.
    let closer = std::thread::spawn(move || {
        use std::io::Read;
        let (mut c, _) = mute.accept().unwrap();
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") && c.read(&mut byte).unwrap_or(0) == 1 {
            head.push(byte[0]);
        }
    });
    let out = probe(&port);
    closer.join().unwrap();
    assert_eq!(out.status.code(), Some(2), "no answer is unhealthy");
    assert!(
        String::from_utf8_lossy(&out.stderr).starts_with("error: healthcheck: unhealthy answer"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
