//! The token lifecycle rules of DESIGN.md, against the emulator, with the
//! broker's wall clock in the test's hands: outages, suspend, a wrong
//! password over a simulated day, a thundering herd.
//!
//! The broker runs in-process (the daemon's library) so the clock can be
//! moved; the emulator's own notion of time stays real, which is fine: the
//! broker judges expiry from `expires_in` on its clock, as the daemon does.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use akscred_tests::scenario::{AKS_SERVER_APP_ID, standard};
use akscred_tests::{Emulator, Fault, FaultTarget, Scenario};
use akscredd::broker::Broker;
use akscredd::clock::{Clock, ManualClock};
use akscredd::config::Config;

const MIN: Duration = Duration::from_secs(60);

struct Setup {
    emu: Emulator,
    broker: Arc<Broker>,
    clock: Arc<ManualClock>,
    dir: tempfile::TempDir,
}

async fn setup(scenario: Scenario, clusters: usize, password: &str) -> Setup {
    let emu = Emulator::start(scenario).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("ca.pem"), emu.ca_pem()).unwrap();
    std::fs::write(dir.path().join("alice.password"), password).unwrap();
    let mut cfg = format!(
        "[daemon]\nca_file = \"ca.pem\"\ntick = \"30s\"\n\n[clouds.emulator]\nlogin_endpoint = \"{}\"\narm_endpoint = \"{}\"\narm_resource = \"https://management.core.windows.net/\"\n\n[identities.alice]\ncloud = \"emulator\"\ntenant = \"{}\"\nusername = \"{}\"\npassword = {{ file = \"alice.password\" }}\n",
        emu.login_url(),
        emu.arm_url(),
        standard::TENANT_DOMAIN,
        standard::ALICE,
    );
    for c in emu.scenario().clusters.iter().take(clusters) {
        cfg.push_str(&format!(
            "\n[clusters.{0}]\nidentity = \"alice\"\nsubscription = \"{1}\"\nresource_group = \"{2}\"\nname = \"{0}\"\n",
            c.name, c.subscription, c.resource_group
        ));
    }
    let path = dir.path().join("config.toml");
    std::fs::write(&path, &cfg).unwrap();
    let config = Config::load(&path).unwrap();
    let http = akscredd::http::build_client(config.daemon.ca_file.as_deref()).unwrap();
    let clock = Arc::new(ManualClock::new(SystemTime::now()));
    let broker = Arc::new(Broker::new(config, http, clock.clone()));
    Setup {
        emu,
        broker,
        clock,
        dir,
    }
}

impl Setup {
    fn cluster(&self, i: usize) -> String {
        self.emu.scenario().clusters[i].name.clone()
    }

    fn passwords(&self) -> u64 {
        self.emu.counters().password_attempts(standard::ALICE)
    }

    fn set_password_file(&self, password: &str) {
        std::fs::write(self.dir.path().join("alice.password"), password).unwrap();
    }

    /// Moves the broker's wall clock by `step` and runs one scheduler pass,
    /// `times` times.
    async fn run(&self, step: Duration, times: usize) {
        for _ in 0..times {
            self.clock.advance(step);
            self.broker.tick().await;
        }
    }
}

fn path_exists(p: &Path) -> bool {
    p.exists()
}

#[tokio::test(flavor = "multi_thread")]
async fn an_outage_of_twenty_minutes_costs_no_password_and_no_downtime() {
    let s = setup(Scenario::standard(), 1, standard::PASSWORD).await;
    let c = s.cluster(0);
    let first = s.broker.credential(&c).await.unwrap();
    let signed_in = s.passwords();
    assert_eq!(signed_in, 2, "ARM and the AKS client");

    // Half an hour in, the token endpoint goes down for twenty minutes,
    // across the planned refresh at about 45 minutes.
    s.run(MIN, 30).await;
    s.emu
        .fail_next(FaultTarget::Token, 100_000, Fault::ServiceUnavailable);
    for _ in 0..(20 * 6) {
        s.run(Duration::from_secs(10), 1).await;
        let t = s.broker.credential(&c).await.unwrap();
        assert!(t.is_valid(s.clock.now()), "an expired token was served");
    }
    let status = s.broker.status();
    assert_eq!(status.clusters[0].state, "ready");
    assert!(
        status.clusters[0].last_error.is_some(),
        "the outage is visible in status: {status:?}"
    );
    s.emu.clear_faults();
    // Backoff is capped at 5 minutes: the refresh lands within that.
    s.run(Duration::from_secs(10), 31).await;
    let after = s.broker.credential(&c).await.unwrap();
    assert!(
        after.obtained > first.obtained,
        "refreshed after the outage"
    );
    assert!(after.is_fresh(s.clock.now()));
    assert_eq!(
        s.passwords(),
        signed_in,
        "no password during or after the outage"
    );
    assert!(s.emu.counters().grants_of_type("refresh_token") >= 1);
    assert!(s.broker.status().clusters[0].last_error.is_none());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_wrong_password_is_sent_once_in_a_day_across_twenty_clusters() {
    let s = setup(Scenario::many_managed(20), 20, "wrong password").await;
    for i in 0..20 {
        assert!(s.broker.credential(&s.cluster(i)).await.is_err());
    }
    // A simulated day: the scheduler every 30 s, kubectl now and then.
    for step in 0..(24 * 120) {
        s.run(Duration::from_secs(30), 1).await;
        if step % 40 == 0 {
            assert!(s.broker.credential(&s.cluster(step % 20)).await.is_err());
        }
    }
    assert_eq!(s.passwords(), 1);
    let status = s.broker.status();
    assert_eq!(status.identities[0].state, "needs_attention");
    assert!(status.clusters.iter().all(|c| c.state == "needs_attention"));

    // A different (still wrong) password in the source: exactly one try.
    s.set_password_file("another wrong password");
    s.run(Duration::from_secs(30), 1).await;
    s.run(Duration::from_secs(30), 240).await;
    assert_eq!(s.passwords(), 2);

    // The right one: signs in, and every cluster gets its token.
    s.set_password_file(standard::PASSWORD);
    s.run(Duration::from_secs(30), 2).await;
    for i in 0..20 {
        s.broker.credential(&s.cluster(i)).await.unwrap();
    }
    // ARM and the AKS client each need one password grant.
    assert_eq!(s.passwords(), 4);
    assert!(
        s.broker
            .status()
            .clusters
            .iter()
            .all(|c| c.state == "ready")
    );
    assert!(path_exists(&s.dir.path().join("alice.password")));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_thousand_requests_for_a_stale_token_make_one_upstream_call() {
    let s = setup(Scenario::many_managed(3), 3, standard::PASSWORD).await;
    for i in 0..3 {
        s.broker.credential(&s.cluster(i)).await.unwrap();
    }
    let before = s
        .emu
        .counters()
        .token_requests_for_resource(AKS_SERVER_APP_ID);
    assert_eq!(before, 1);
    // 59 minutes in: less than min_remaining (2 min) left.
    s.clock.advance(59 * MIN);
    let mut requests = tokio::task::JoinSet::new();
    for i in 0..1000 {
        let broker = s.broker.clone();
        let name = s.cluster(i % 3);
        requests.spawn(async move { broker.credential(&name).await.map(|t| t.obtained) });
    }
    let mut obtained = std::collections::HashSet::new();
    while let Some(r) = requests.join_next().await {
        obtained.insert(r.unwrap().unwrap());
    }
    assert_eq!(obtained.len(), 1, "every caller got the same new token");
    let after = s
        .emu
        .counters()
        .token_requests_for_resource(AKS_SERVER_APP_ID);
    assert_eq!(after - before, 1, "one upstream call");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_wall_clock_jump_is_caught_within_one_tick() {
    let s = setup(Scenario::standard(), 1, standard::PASSWORD).await;
    let c = s.cluster(0);
    let first = s.broker.credential(&c).await.unwrap();
    // The laptop slept for three hours: the monotonic clock did not move,
    // the wall clock did.
    s.clock.advance(180 * MIN);
    s.broker.tick().await;
    let now = s.clock.now();
    let slot_token = s.broker.credential(&c).await.unwrap();
    assert!(slot_token.obtained > first.obtained);
    assert!(slot_token.is_fresh(now));
    // The scheduler pass alone refreshed it: the request found it ready.
    assert_eq!(slot_token.obtained, now);
    assert!(now + slot_token.min_remaining < slot_token.expires_on);
    assert_eq!(s.passwords(), 2, "refresh tokens, not the password");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_dead_refresh_token_falls_back_to_the_password_once() {
    let s = setup(Scenario::standard(), 1, standard::PASSWORD).await;
    let c = s.cluster(0);
    s.broker.credential(&c).await.unwrap();
    assert_eq!(s.passwords(), 2);
    // Ninety days without use: every refresh token is refused (AADSTS700082).
    s.emu.expire_refresh_tokens();
    s.run(MIN, 60).await;
    let t = s.broker.credential(&c).await.unwrap();
    assert!(t.is_fresh(s.clock.now()));
    // One new password grant for the AKS token (its refresh token died);
    // the ARM token was not needed again.
    assert_eq!(s.passwords(), 3);
    // The new refresh token carries the next refresh.
    s.run(MIN, 60).await;
    s.broker.credential(&c).await.unwrap();
    assert_eq!(s.passwords(), 3);
}

#[tokio::test(flavor = "multi_thread")]
async fn retry_after_is_honoured() {
    let s = setup(Scenario::standard(), 1, standard::PASSWORD).await;
    let c = s.cluster(0);
    s.broker.credential(&c).await.unwrap();
    // Refresh due at about 45 minutes; the endpoint answers 429 with
    // Retry-After: 120 once, then recovers.
    s.emu.fail_next(
        FaultTarget::Token,
        1,
        Fault::TooManyRequests {
            retry_after: Duration::from_secs(120),
        },
    );
    let sent = || {
        let c = s.emu.counters();
        c.token_v1 + c.token_v2
    };
    let before = sent();
    // Step until the planned refresh goes out (70-80 % of the hour).
    let mut waited = Duration::ZERO;
    while sent() == before {
        assert!(waited < 50 * MIN, "no refresh within 50 minutes");
        s.run(Duration::from_secs(1), 1).await;
        waited += Duration::from_secs(1);
    }
    assert!(waited >= 42 * MIN, "refreshed too early: {waited:?}");
    let after_429 = sent();
    assert_eq!(
        after_429 - before,
        1,
        "one refresh attempt, refused with 429"
    );
    // Nothing is sent for the next 119 seconds...
    s.run(Duration::from_secs(1), 119).await;
    assert_eq!(sent(), after_429);
    // ...and the retry goes out once the 120 seconds have passed.
    s.run(Duration::from_secs(1), 2).await;
    assert_eq!(sent(), after_429 + 1);
    assert_eq!(s.passwords(), 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn many_resources_of_one_client_cost_one_password() {
    // Twenty legacy clusters, each its own server app, one client app:
    // twenty distinct tokens, all from one refresh token.
    let mut scenario = Scenario::standard();
    let template = scenario.cluster("aks-legacy").unwrap().clone();
    scenario.clusters = (0..20)
        .map(|i| {
            let mut c = template.clone();
            c.name = format!("legacy-{i:02}");
            c.aad = akscred_tests::scenario::ClusterAad::LegacyAad {
                server_id: format!("5a9c3e17-2b8d-4f60-9e41-c7d2a6b8f0{i:02}"),
                client_id: standard::LEGACY_CLIENT_ID.to_string(),
            };
            c
        })
        .collect();
    let s = setup(scenario, 20, standard::PASSWORD).await;
    let mut requests = tokio::task::JoinSet::new();
    for i in 0..20 {
        let broker = s.broker.clone();
        let name = s.cluster(i);
        requests.spawn(async move { broker.credential(&name).await.map(|_| ()) });
    }
    while let Some(r) = requests.join_next().await {
        r.unwrap().unwrap();
    }
    // One for ARM, one for the legacy client; the other nineteen tokens
    // come from the refresh token the first sign-in left.
    assert_eq!(s.passwords(), 2);
    assert_eq!(s.emu.counters().grants_of_type("refresh_token"), 19);
}
