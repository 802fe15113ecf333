//! One AKS API server per cluster: bearer-token authentication as AKS does
//! it, and enough of the Kubernetes API for `kubectl version`,
//! `kubectl get namespaces|pods|secrets` and `helm list`.
//!
//! Authentication (documented in `ClusterAad::audience`): an RS256 token
//! from the emulator's key, inside its `nbf`/`exp` window, from this tenant
//! (`iss` `https://sts.windows.net/{tid}/`; managed clusters also take the
//! v2 issuer, as newer guard versions do), with `aud` exactly the server id
//! (managed AAD, guard) or exactly `spn:<server id>` (legacy AAD,
//! kube-apiserver `--oidc-client-id`). Local-account clusters take client
//! certificates instead (`local_accounts`).
//!
//! Discovery is served in the legacy (non-aggregated) form whatever the
//! `Accept` header asks: client-go falls back when the answer's content type
//! lacks the aggregated-discovery profile, which real older servers do too.

use std::sync::Arc;

use axum::Router;
use axum::extract::{Request, State};
use axum::http::Method;
use axum::response::Response;
use serde_json::{Value, json};

use crate::counters::Counters;
use crate::emulator::Shared;
use crate::http::{self, Bearer, bearer, segments};
use crate::jwt::check_times;
use crate::scenario::{ClusterAad, ClusterSpec};
use crate::time;

pub(crate) fn router(shared: Arc<Shared>, cluster: String) -> Router {
    Router::new()
        .fallback(handle)
        .with_state((shared, Arc::new(cluster)))
}

type ClusterState = (Arc<Shared>, Arc<String>);

async fn handle(State((shared, cluster)): State<ClusterState>, request: Request) -> Response {
    let (parts, _body) = request.into_parts();
    {
        let counters = &mut shared.state().counters;
        counters.apiserver += 1;
        Counters::bump(&mut counters.apiserver_by_cluster, cluster.to_string());
    }
    let Some(spec) = shared.scenario.cluster(&cluster) else {
        return status(500, "InternalError", "cluster is not in the scenario");
    };
    let caller = match shared.local_clusters.get(&cluster) {
        // Local accounts: client certificates only (`local_accounts`).
        Some(local) => local.caller(&parts.extensions),
        None => match bearer(&parts.headers) {
            Bearer::Token(token) => authenticate(&shared, spec, token, time::now_unix()),
            Bearer::Missing | Bearer::OtherScheme => None,
        },
    };
    let Some(caller) = caller else {
        return status(401, "Unauthorized", "Unauthorized");
    };
    {
        let callers = &mut shared.state().counters.apiserver_callers;
        Counters::bump(
            callers.entry(cluster.to_string()).or_default(),
            caller.to_lowercase(),
        );
    }
    if parts.method != Method::GET {
        return status(
            405,
            "MethodNotAllowed",
            "the server does not allow this method on the requested resource",
        );
    }
    let server = shared
        .cluster_urls
        .get(cluster.as_str())
        .cloned()
        .unwrap_or_default();
    let segs = segments(&parts.uri);
    let segs: Vec<&str> = segs.iter().map(String::as_str).collect();
    match get(&cluster, &server, &segs) {
        Some(body) => http::json(200, &body, &[]),
        None => match segs.as_slice() {
            ["api", "v1", "namespaces", ns] => status_not_found("namespaces", ns),
            _ => status(
                404,
                "NotFound",
                "the server could not find the requested resource",
            ),
        },
    }
}

/// The caller's `upn` (`appid` for a service principal, else `oid`) when
/// the token is good for this cluster.
fn authenticate(shared: &Shared, spec: &ClusterSpec, token: &str, now: u64) -> Option<String> {
    let claims = shared.key.verify(token).ok()?;
    check_times(&claims, now).ok()?;
    let claim = |name: &str| claims.get(name).and_then(Value::as_str).unwrap_or("");
    let issuer_ok = claim("iss") == shared.v1_issuer()
        || (spec.aad == ClusterAad::ManagedAad && claim("iss") == shared.v2_issuer());
    if !issuer_ok || claim("tid") != shared.scenario.tenant_id {
        return None;
    }
    if claim("aud") != spec.aad.audience() {
        return None;
    }
    let who = ["upn", "appid", "oid"]
        .into_iter()
        .map(claim)
        .find(|v| !v.is_empty())
        .unwrap_or("");
    (!who.is_empty()).then(|| who.to_owned())
}

fn status(code: u16, reason: &str, message: &str) -> Response {
    http::json(
        code,
        &json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": message,
            "reason": reason,
            "code": code,
        }),
        &[],
    )
}

fn status_not_found(kind: &str, name: &str) -> Response {
    http::json(
        404,
        &json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": format!("{kind} \"{name}\" not found"),
            "reason": "NotFound",
            "details": {"name": name, "kind": kind},
            "code": 404,
        }),
        &[],
    )
}

/// `(plural, kind, namespaced, short name)` of what `/api/v1` lists.
const RESOURCES: [(&str, &str, bool, &str); 5] = [
    ("namespaces", "Namespace", false, "ns"),
    ("pods", "Pod", true, "po"),
    ("secrets", "Secret", true, ""),
    ("configmaps", "ConfigMap", true, "cm"),
    ("services", "Service", true, "svc"),
];

const CREATED: u64 = 1_735_689_600; // 2025-01-01

/// Namespaces every AKS cluster has, plus one named after the cluster so
/// tests can tell clusters apart.
fn namespaces(cluster: &str) -> Vec<String> {
    ["default", "kube-node-lease", "kube-public", "kube-system"]
        .iter()
        .map(|s| (*s).to_owned())
        .chain(std::iter::once(cluster.to_owned()))
        .collect()
}

fn namespace(name: &str) -> Value {
    let uid = crate::directory::object_id(&format!("namespace:{name}"));
    json!({
        "metadata": {
            "name": name,
            "uid": uid,
            "resourceVersion": "1",
            "creationTimestamp": time::rfc3339(CREATED),
            "labels": {"kubernetes.io/metadata.name": name},
        },
        "spec": {"finalizers": ["kubernetes"]},
        "status": {"phase": "Active"},
    })
}

fn list(kind: &str, items: Vec<Value>) -> Value {
    json!({
        "kind": format!("{kind}List"),
        "apiVersion": "v1",
        "metadata": {"resourceVersion": "100"},
        "items": items,
    })
}

fn get(cluster: &str, server: &str, segs: &[&str]) -> Option<Value> {
    let known_ns = |ns: &str| namespaces(cluster).iter().any(|n| n == ns);
    let empty_list = |plural: &str| {
        RESOURCES
            .iter()
            .find(|r| r.0 == plural && r.2)
            .map(|r| list(r.1, Vec::new()))
    };
    Some(match segs {
        ["version"] => json!({
            "major": "1",
            "minor": "32",
            "gitVersion": "v1.32.4",
            "gitCommit": "59526cd4867447956156ae3a602fcbac10a2c335",
            "gitTreeState": "clean",
            "buildDate": "2025-04-22T16:02:27Z",
            "goVersion": "go1.23.6",
            "compiler": "gc",
            "platform": "linux/amd64",
        }),
        ["api"] => json!({
            "kind": "APIVersions",
            "versions": ["v1"],
            "serverAddressByClientCIDRs": [{
                "clientCIDR": "0.0.0.0/0",
                "serverAddress": server.trim_start_matches("https://"),
            }],
        }),
        ["apis"] => json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": []}),
        ["api", "v1"] => json!({
            "kind": "APIResourceList",
            "groupVersion": "v1",
            "resources": RESOURCES.iter().map(|(plural, kind, namespaced, short)| {
                let mut r = json!({
                    "name": plural,
                    "singularName": kind.to_ascii_lowercase(),
                    "namespaced": namespaced,
                    "kind": kind,
                    "verbs": ["create", "delete", "get", "list", "patch", "update", "watch"],
                });
                if let (false, Some(obj)) = (short.is_empty(), r.as_object_mut()) {
                    obj.insert("shortNames".into(), json!([short]));
                }
                r
            }).collect::<Vec<_>>(),
        }),
        ["api", "v1", "namespaces"] => list(
            "Namespace",
            namespaces(cluster).iter().map(|n| namespace(n)).collect(),
        ),
        ["api", "v1", "namespaces", ns] if known_ns(ns) => {
            let mut ns = namespace(ns);
            if let Some(obj) = ns.as_object_mut() {
                obj.insert("kind".into(), "Namespace".into());
                obj.insert("apiVersion".into(), "v1".into());
            }
            ns
        }
        ["api", "v1", "namespaces", ns, plural] if known_ns(ns) => empty_list(plural)?,
        ["api", "v1", plural] => empty_list(plural)?,
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn discovery_and_lists() {
        let api = get("aks-one", "https://127.0.0.1:9", &["api"]).expect("served");
        assert_eq!(
            api["serverAddressByClientCIDRs"][0]["serverAddress"],
            "127.0.0.1:9"
        );
        let ns = get("aks-one", "", &["api", "v1", "namespaces"]).expect("served");
        let names: Vec<&str> = ns["items"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|i| i["metadata"]["name"].as_str())
            .collect();
        assert_eq!(
            names,
            [
                "default",
                "kube-node-lease",
                "kube-public",
                "kube-system",
                "aks-one"
            ]
        );
        assert_eq!(
            get(
                "aks-one",
                "",
                &["api", "v1", "namespaces", "default", "secrets"]
            ),
            Some(list("Secret", Vec::new()))
        );
        assert_eq!(
            get("aks-one", "", &["api", "v1", "secrets"]),
            Some(list("Secret", Vec::new()))
        );
        assert_eq!(
            get(
                "aks-one",
                "",
                &["api", "v1", "namespaces", "nope", "secrets"]
            ),
            None
        );
        assert_eq!(get("aks-one", "", &["api", "v1", "widgets"]), None);
        assert_eq!(get("aks-one", "", &["openapi", "v2"]), None);
    }
}
