//! The image and the Kubernetes manifests run the proxy unprivileged: a distroless,
//! non-root final stage, and a pod with a read-only root filesystem, no capabilities,
//! no privilege escalation and the runtime's seccomp profile (as Gardener's chart does).
//! Plain text checks: the tree has no YAML parser, and these few lines need none.

use crate::dockerfile::stages;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

fn read(path: &str) -> String {
    std::fs::read_to_string(format!("{ROOT}/{path}")).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// The lines nested under the first line that reads `key:` after `after` (a line of
/// the file that opens the part to search), without their common indentation.
fn block<'a>(yaml: &'a str, after: &str, key: &str) -> Vec<&'a str> {
    let lines: Vec<&str> = yaml.lines().collect();
    let from = lines
        .iter()
        .position(|l| l.trim() == after)
        .unwrap_or_else(|| panic!("no line {after:?}"));
    let (at, line) = lines[from..]
        .iter()
        .enumerate()
        .find(|(_, l)| l.trim() == format!("{key}:"))
        .unwrap_or_else(|| panic!("no {key}: after {after:?}"));
    let indent = line.len() - line.trim_start().len();
    lines[from + at + 1..]
        .iter()
        .take_while(|l| l.trim().is_empty() || l.len() - l.trim_start().len() > indent)
        .map(|l| l.trim())
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect()
}

#[test]
fn the_final_image_is_distroless_and_runs_as_non_root() {
    let dockerfile = read("Dockerfile");
    let stages = stages(&dockerfile);
    let last = stages.last().unwrap();
    let from = &last[0].1;
    assert!(
        from.starts_with("gcr.io/distroless/") && from.ends_with(":nonroot"),
        "final stage FROM {from}"
    );
    assert!(
        last.iter().any(|(k, a)| k == "USER" && a == "nonroot:nonroot"),
        "{last:?}"
    );
    // No shell in distroless: a RUN there could not work, and would mean another base.
    assert!(!last.iter().any(|(k, _)| k == "RUN"), "{last:?}");
    // Docker must not send target/ (gigabytes) or .git as the build context.
    let ignored = read(".dockerignore");
    assert!(ignored.lines().any(|l| l.trim_matches('/') == "target"), "{ignored}");
}

#[test]
fn the_deployment_runs_unprivileged_on_a_read_only_root_filesystem() {
    let deployment = read("deploy/kubernetes/deployment.yaml");
    assert_eq!(deployment.matches("image:").count(), 1, "one container, checked below");
    assert!(deployment.contains("automountServiceAccountToken: false"));

    let pod = block(&deployment, "spec:", "securityContext");
    for field in ["runAsNonRoot: true", "runAsUser: 65532", "runAsGroup: 65532"] {
        assert!(pod.contains(&field), "pod securityContext lacks {field}: {pod:?}");
    }
    let seccomp = block(&deployment, "securityContext:", "seccompProfile");
    assert_eq!(seccomp, ["type: RuntimeDefault"]);

    let container = block(&deployment, "containers:", "securityContext");
    for field in ["allowPrivilegeEscalation: false", "readOnlyRootFilesystem: true"] {
        assert!(
            container.contains(&field),
            "container securityContext lacks {field}: {container:?}"
        );
    }
    let capabilities = block(&deployment, "containers:", "capabilities");
    assert_eq!(capabilities, [r#"drop: ["ALL"]"#]);
    assert!(!deployment.contains("privileged: true") && !deployment.contains("add:"));

    // With a read-only root, the one place the proxy writes is its state_dir: a volume.
    let configmap = read("deploy/kubernetes/configmap.yaml");
    assert!(configmap.contains(r#"state_dir = "/var/lib/jwks-edge""#), "{configmap}");
    assert!(deployment.contains("mountPath: /var/lib/jwks-edge"));
    assert!(block(&deployment, "volumes:", "emptyDir")
        .iter()
        .any(|l| l.starts_with("sizeLimit:")));
}
