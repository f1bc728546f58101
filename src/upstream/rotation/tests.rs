use super::*;

/// Public signing keys of the given types and ids (the members hygiene asks for).
fn set_of(keys: &[(&str, &str)]) -> Bytes {
    let keys: Vec<String> = keys
        .iter()
        .map(|(kty, kid)| match *kty {
            "RSA" => format!(r#"{{"kty":"RSA","kid":"{kid}","n":"AQAB","e":"AQAB"}}"#),
            "EC" => format!(r#"{{"kty":"EC","kid":"{kid}","crv":"P-256","x":"AQ","y":"AQ"}}"#),
            other => format!(r#"{{"kty":"{other}","kid":"{kid}"}}"#),
        })
        .collect();
    Bytes::from(format!(r#"{{"keys":[{}]}}"#, keys.join(",")))
}

fn set(kids: &[&str]) -> Bytes {
    set_of(&kids.iter().map(|k| ("EC", *k)).collect::<Vec<_>>())
}

fn kids(body: &[u8]) -> Vec<String> {
    let value: Value = serde_json::from_slice(body).unwrap();
    value["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["kid"].as_str().unwrap().to_owned())
        .collect()
}

fn t0() -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000)
}

fn at(s: u64) -> SystemTime {
    t0() + Duration::from_secs(s)
}

fn retention(keep: u64) -> KeyRetention {
    KeyRetention::new(Duration::from_secs(keep), KeyCap::UNLIMITED, &[])
}

fn published(retention: &mut KeyRetention, upstream: Bytes, now: SystemTime) -> Vec<String> {
    kids(&retention.publish(upstream, now).unwrap().0)
}

/// The kinds of `events`, with their kids.
fn kinds(events: &[KeyEvent]) -> Vec<String> {
    events
        .iter()
        .map(|e| {
            let kid = match e {
                KeyEvent::Added { kid } | KeyEvent::Removed { kid, .. } | KeyEvent::Expired { kid, .. } => {
                    kid.clone().unwrap_or_default()
                }
                KeyEvent::Withdrawn { kid } => kid.clone(),
            };
            format!("{} {kid}", e.kind().as_str())
        })
        .collect()
}

/// A restart: a new retention restored from what `before` would have saved at `fetched_at`.
fn restart(before: &KeyRetention, fetched_at: SystemTime, now: SystemTime, withdrawn: &[String]) -> KeyRetention {
    let mut after = KeyRetention::new(before.keep, before.cap, withdrawn);
    let saved = before.saved();
    // Through JSON, as the snapshot stores it.
    let saved: Vec<SavedKey> = serde_json::from_slice(&serde_json::to_vec(&saved).unwrap()).unwrap();
    after.restore(&before.body().unwrap(), fetched_at, Some(&saved), now);
    after
}

#[test]
fn removed_keys_stay_published_for_the_configured_time() {
    let mut retention = retention(60);
    assert_eq!(published(&mut retention, set(&["a", "b"]), t0()), ["a", "b"]);
    // b rotated out at t0+10: still published until t0+70.
    assert_eq!(published(&mut retention, set(&["a", "c"]), at(10)), ["a", "c", "b"]);
    assert_eq!(published(&mut retention, set(&["a", "c"]), at(69)), ["a", "c", "b"]);
    assert_eq!(published(&mut retention, set(&["a", "c"]), at(70)), ["a", "c"]);
    // A key that comes back is not listed twice.
    let mut retention = self::retention(60);
    retention.publish(set(&["a", "b"]), t0()).unwrap();
    retention.publish(set(&["a"]), at(1)).unwrap();
    assert_eq!(published(&mut retention, set(&["a", "b"]), at(2)), ["a", "b"]);
}

#[test]
fn each_change_is_reported_once() {
    let mut retention = retention(60);
    let (_, events) = retention.publish(set(&["a", "b"]), t0()).unwrap();
    assert_eq!(kinds(&events), ["added a", "added b"]);
    assert!(retention.publish(set(&["a", "b"]), at(1)).unwrap().1.is_empty());
    let (_, events) = retention.publish(set(&["a", "c"]), at(10)).unwrap();
    assert_eq!(kinds(&events), ["added c", "removed b"]);
    assert_eq!(
        events[1],
        KeyEvent::Removed {
            kid: Some("b".into()),
            retained_until: Some(at(70))
        }
    );
    assert!(retention.publish(set(&["a", "c"]), at(20)).unwrap().1.is_empty());
    let (_, events) = retention.publish(set(&["a", "c"]), at(75)).unwrap();
    assert_eq!(kinds(&events), ["expired b"]);
    assert!(retention.publish(set(&["a", "c"]), at(80)).unwrap().1.is_empty());
    // Without retention a removed key is gone at once.
    let mut retention = self::retention(0);
    retention.publish(set(&["a", "b"]), t0()).unwrap();
    let (body, events) = retention.publish(set(&["a"]), at(1)).unwrap();
    assert_eq!(kids(&body), ["a"]);
    assert_eq!(
        events,
        [KeyEvent::Removed {
            kid: Some("b".into()),
            retained_until: None
        }]
    );
}

#[test]
fn the_timer_runs_between_fetches_too() {
    let mut retention = retention(60);
    retention.publish(set(&["a", "b"]), t0()).unwrap();
    retention.publish(set(&["a"]), at(10)).unwrap();
    // The upstream is down from here on: no fetch, only the clock.
    assert!(retention.expire(at(69)).is_empty());
    assert_eq!(kids(&retention.body().unwrap()), ["a", "b"]);
    assert_eq!(kinds(&retention.expire(at(70))), ["expired b"]);
    assert_eq!(kids(&retention.body().unwrap()), ["a"]);
}

#[test]
fn without_retention_the_upstream_bytes_are_kept() {
    let mut retention = retention(0);
    let upstream = Bytes::from_static(
        b"{ \"keys\" : [ {\"kty\":\"EC\",\"kid\":\"a\",\"crv\":\"P-256\",\"x\":\"AQ\",\"y\":\"AQ\"} ] }",
    );
    retention.publish(set(&["b"]), SystemTime::UNIX_EPOCH).unwrap();
    assert_eq!(
        retention.publish(upstream.clone(), SystemTime::UNIX_EPOCH).unwrap().0,
        upstream
    );
    // With retention, too, while nothing is retained.
    let mut retention = self::retention(60);
    assert_eq!(retention.publish(upstream.clone(), t0()).unwrap().0, upstream);
}

#[test]
fn a_set_saved_without_history_counts_as_listed_upstream() {
    let mut retention = retention(60);
    assert!(retention.restore(&set(&["old", "a"]), t0(), None, at(5)).is_empty());
    assert_eq!(kids(&retention.body().unwrap()), ["old", "a"]);
    // Gone at the first fetch: removed from then on, as before the history was kept.
    assert_eq!(published(&mut retention, set(&["a"]), at(10)), ["a", "old"]);
    assert_eq!(published(&mut retention, set(&["a"]), at(69)), ["a", "old"]);
    assert_eq!(published(&mut retention, set(&["a"]), at(70)), ["a"]);
}

#[test]
fn restarts_keep_the_removal_time() {
    let mut first = retention(60);
    first.publish(set(&["a", "b"]), t0()).unwrap();
    first.publish(set(&["a"]), at(10)).unwrap();
    // Restarted at +20, +40 and +60: b is still published, its timer still from +10.
    let mut current = first;
    for (fetched, now) in [(10, 20), (20, 40), (40, 60)] {
        current = restart(&current, at(fetched), at(now), &[]);
        assert_eq!(kids(&current.body().unwrap()), ["a", "b"], "restarted at +{now}");
        let summary = current.summary();
        assert_eq!(summary.keys[1].removed_at, Some(at(10)));
        assert_eq!(summary.keys[1].expires_at, Some(at(70)));
        assert_eq!(summary.keys[0].first_seen, t0());
        current.publish(set(&["a"]), at(now)).unwrap();
    }
    // Restarted at +70: gone at once, before any fetch.
    let mut last = KeyRetention::new(Duration::from_secs(60), KeyCap::UNLIMITED, &[]);
    let events = last.restore(&current.body().unwrap(), at(60), Some(&current.saved()), at(70));
    assert_eq!(kinds(&events), ["expired b"]);
    assert_eq!(kids(&last.body().unwrap()), ["a"]);
    // A shorter keep_removed_keys at restart applies to the saved removal time.
    let mut shorter = KeyRetention::new(Duration::from_secs(30), KeyCap::UNLIMITED, &[]);
    shorter.restore(&current.body().unwrap(), at(60), Some(&current.saved()), at(45));
    assert_eq!(kids(&shorter.body().unwrap()), ["a"]);
}

#[test]
fn saved_times_after_now_count_as_now() {
    let mut first = retention(60);
    first.publish(set(&["a", "b"]), at(1000)).unwrap();
    first.publish(set(&["a"]), at(1000)).unwrap();
    // The clock was ahead when saving; now it says t0.
    let restored = restart(&first, at(1000), t0(), &[]);
    let summary = restored.summary();
    assert!(summary
        .keys
        .iter()
        .all(|k| k.first_seen == t0() && k.last_seen_upstream == t0()));
    assert_eq!(summary.keys[1].removed_at, Some(t0()));
}

#[test]
fn withdrawn_keys_are_never_published() {
    let withdrawn = vec!["bad".to_owned()];
    let mut retention = KeyRetention::new(Duration::from_secs(60), KeyCap::UNLIMITED, &withdrawn);
    let (body, events) = retention.publish(set(&["good", "bad"]), t0()).unwrap();
    assert_eq!(kids(&body), ["good"]);
    assert_eq!(kinds(&events), ["added good", "withdrawn bad"]);
    // Reported once, not per fetch.
    assert!(retention.publish(set(&["good", "bad"]), at(1)).unwrap().1.is_empty());
    // Leaving upstream, a withdrawn key is not retained.
    let (body, events) = retention.publish(set(&["good"]), at(2)).unwrap();
    assert_eq!(kids(&body), ["good"]);
    assert!(events.is_empty(), "{events:?}");
    // Back again: reported again.
    let (_, events) = retention.publish(set(&["bad", "good"]), at(3)).unwrap();
    assert_eq!(kinds(&events), ["withdrawn bad"]);
    let summary = retention.summary();
    assert_eq!(summary.published, 1);
    assert_eq!(summary.keys[0].state, KeyState::Withdrawn);
    assert_eq!(summary.keys[0].kid.as_deref(), Some("bad"));

    // Only withdrawn keys upstream and nothing retained: refused, nothing changes.
    let mut only_bad = KeyRetention::new(Duration::ZERO, KeyCap::UNLIMITED, &withdrawn);
    assert_eq!(only_bad.publish(set(&["bad"]), t0()), Err(Unpublishable::AllWithdrawn));
    assert_eq!(only_bad.body(), None);
    let mut no_keep = KeyRetention::new(Duration::ZERO, KeyCap::UNLIMITED, &withdrawn);
    no_keep.publish(set(&["good"]), t0()).unwrap();
    assert_eq!(no_keep.publish(set(&["bad"]), at(1)), Err(Unpublishable::AllWithdrawn));
    assert_eq!(kids(&no_keep.body().unwrap()), ["good"]);
    assert_eq!(no_keep.summary().keys.len(), 1);
    // With a retained key, that key alone is published.
    let (body, _) = retention.publish(set(&["bad"]), at(4)).unwrap();
    assert_eq!(kids(&body), ["good"]);
    assert_eq!(retention.summary().keys[1].state, KeyState::Retained);
}

#[test]
fn a_snapshot_s_withdrawn_keys_are_left_out_at_restore() {
    // Saved before "bad" was withdrawn: current "bad", retained "old".
    let mut before = retention(60);
    before.publish(set(&["bad", "good", "old"]), t0()).unwrap();
    before.publish(set(&["bad", "good"]), at(10)).unwrap();
    assert_eq!(kids(&before.body().unwrap()), ["bad", "good", "old"]);
    let withdrawn = vec!["bad".to_owned(), "old".to_owned()];
    let mut after = KeyRetention::new(Duration::from_secs(60), KeyCap::UNLIMITED, &withdrawn);
    let events = after.restore(&before.body().unwrap(), at(10), Some(&before.saved()), at(11));
    assert_eq!(kinds(&events), ["withdrawn bad", "withdrawn old"]);
    assert_eq!(kids(&after.body().unwrap()), ["good"]);
    // The restored history says "bad" was withdrawn: not reported again at the next fetch.
    assert!(after.publish(set(&["bad", "good"]), at(12)).unwrap().1.is_empty());
    // A snapshot left with nothing to publish is not served.
    let mut nothing = KeyRetention::new(Duration::ZERO, KeyCap::UNLIMITED, &["good".to_owned()]);
    nothing.restore(&set(&["good"]), t0(), None, at(1));
    assert_eq!(nothing.body(), None);
    // After a restart the saved withdrawal (not in the body) is reported once again.
    let restored = restart(&after, at(12), at(13), &withdrawn);
    assert!(restored
        .summary()
        .keys
        .iter()
        .any(|k| k.kid.as_deref() == Some("bad") && k.state == KeyState::Withdrawn));
    let mut again = KeyRetention::new(Duration::from_secs(60), KeyCap::UNLIMITED, &withdrawn);
    let events = again.restore(&after.body().unwrap(), at(12), Some(&after.saved()), at(13));
    assert_eq!(kinds(&events), ["withdrawn bad"]);
    // Withdrawn no more: the saved withdrawal is forgotten and the key published again.
    let mut lifted = KeyRetention::new(Duration::from_secs(60), KeyCap::UNLIMITED, &[]);
    assert!(lifted
        .restore(&after.body().unwrap(), at(12), Some(&after.saved()), at(13))
        .is_empty());
    let (body, events) = lifted.publish(set(&["bad", "good"]), at(14)).unwrap();
    assert_eq!(kids(&body), ["bad", "good"]);
    assert_eq!(kinds(&events), ["added bad"]);
}

#[test]
fn retention_drops_the_oldest_retained_keys_to_stay_under_the_cap() {
    let cap = KeyCap {
        rsa: 3,
        ..KeyCap::UNLIMITED
    };
    let mut retention = KeyRetention::new(Duration::from_secs(3600), cap, &[]);
    let rsa = |kids: &[&str]| set_of(&kids.iter().map(|k| ("RSA", *k)).collect::<Vec<_>>());
    retention.publish(rsa(&["r1", "r2"]), t0()).unwrap();
    // r1 retained: 3 RSA keys, at the cap.
    assert_eq!(published(&mut retention, rsa(&["r2", "r3"]), at(1)), ["r2", "r3", "r1"]);
    // r2 retained as well would make 4: r1, removed first, goes.
    let (body, events) = retention.publish(rsa(&["r3", "r4"]), at(2)).unwrap();
    assert_eq!(kids(&body), ["r3", "r4", "r2"]);
    assert_eq!(kinds(&events), ["added r4", "removed r2", "expired r1"]);
    assert!(matches!(
        events[2],
        KeyEvent::Expired {
            reason: ExpiryReason::Cap,
            ..
        }
    ));
    // Three RSA keys upstream: no room for any retained RSA key.
    assert_eq!(
        published(&mut retention, rsa(&["r3", "r4", "r5"]), at(3)),
        ["r3", "r4", "r5"]
    );
    // EC keys are not capped here, and never count against RSA.
    let mixed = set_of(&[("RSA", "r3"), ("EC", "e1"), ("EC", "e2"), ("EC", "e3")]);
    retention.publish(mixed, at(4)).unwrap();
    let (body, _) = retention
        .publish(set_of(&[("RSA", "r3"), ("RSA", "r6")]), at(5))
        .unwrap();
    // Retained RSA: r4 and r5 (removed at +4) would make 4 with r3 and r6; one goes.
    assert_eq!(kids(&body), ["r3", "r6", "r5", "e1", "e2", "e3"]);
    // Restoring under a smaller cap applies it at once.
    let mut smaller = KeyRetention::new(
        Duration::from_secs(3600),
        KeyCap {
            rsa: 2,
            ec: 1,
            total: None,
        },
        &[],
    );
    smaller.restore(&retention.body().unwrap(), at(5), Some(&retention.saved()), at(6));
    assert_eq!(kids(&smaller.body().unwrap()), ["r3", "r6", "e3"]);
    let aws = KeyCap::default();
    assert_eq!((aws.rsa, aws.ec, aws.total), (100, 100, None));
}

#[test]
fn an_operator_can_drop_retained_keys_now() {
    let mut retention = retention(3600);
    assert_eq!(retention.drop_retained(), Ok(Vec::new()));
    retention.publish(set(&["a", "b", "c"]), t0()).unwrap();
    retention.publish(set(&["a"]), at(1)).unwrap();
    assert_eq!(kids(&retention.body().unwrap()), ["a", "b", "c"]);
    let events = retention.drop_retained().unwrap();
    assert_eq!(kinds(&events), ["expired b", "expired c"]);
    assert_eq!(kids(&retention.body().unwrap()), ["a"]);
    assert_eq!(retention.drop_retained(), Ok(Vec::new()));
    // Refused when the retained keys are all there is to publish.
    let withdrawn = vec!["a".to_owned()];
    let mut retention = KeyRetention::new(Duration::from_secs(3600), KeyCap::UNLIMITED, &withdrawn);
    retention.publish(set(&["a", "b"]), t0()).unwrap();
    retention.publish(set(&["a"]), at(1)).unwrap();
    assert_eq!(retention.drop_retained(), Err(DropRefused::WouldEmpty));
    assert_eq!(kids(&retention.body().unwrap()), ["b"]);
}

#[test]
fn the_summary_shows_every_key_with_its_times() {
    let mut retention = KeyRetention::new(Duration::from_secs(60), KeyCap::UNLIMITED, &["w".to_owned()]);
    retention.publish(set(&["a", "b", "w"]), t0()).unwrap();
    retention.publish(set(&["a", "w"]), at(10)).unwrap();
    let summary = retention.summary();
    assert_eq!(summary.published, 2);
    let states: Vec<_> = summary
        .keys
        .iter()
        .map(|k| (k.kid.clone().unwrap(), k.state.as_str()))
        .collect();
    assert_eq!(
        states,
        [
            ("a".to_owned(), "current"),
            ("w".to_owned(), "withdrawn"),
            ("b".to_owned(), "retained")
        ]
    );
    let a = &summary.keys[0];
    assert_eq!(
        (a.first_seen, a.last_seen_upstream, a.removed_at, a.expires_at),
        (t0(), at(10), None, None)
    );
    let b = &summary.keys[2];
    assert_eq!((b.first_seen, b.last_seen_upstream), (t0(), t0()));
    assert_eq!((b.removed_at, b.expires_at), (Some(at(10)), Some(at(70))));
    assert_eq!(b.kty.as_deref(), Some("EC"));
}

#[test]
fn keys_without_kid_are_kept_by_their_json() {
    let mut retention = retention(60);
    let one = Bytes::from_static(
        br#"{"keys":[{"kty":"EC","crv":"P-256","x":"1","y":"1"},{"kty":"EC","kid":"k","crv":"P-256","x":"2","y":"2"}],"extra":1}"#,
    );
    let two = Bytes::from_static(br#"{"keys":[{"kty":"EC","kid":"k","crv":"P-256","x":"2","y":"2"}],"extra":2}"#);
    retention.publish(one, t0()).unwrap();
    let (body, _) = retention.publish(two, at(1)).unwrap();
    let value: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(
        value["keys"][1],
        serde_json::json!({"kty":"EC","crv":"P-256","x":"1","y":"1"})
    );
    assert_eq!(value["extra"], 2);
    assert_eq!(retention.summary().keys[1].kid, None);
}

#[test]
fn a_set_whose_only_signing_keys_are_withdrawn_is_not_published() {
    let upstream = Bytes::from_static(
        br#"{"keys":[{"kty":"RSA","kid":"sig","n":"AQAB","e":"AQAB"},{"kty":"RSA","kid":"enc","use":"enc","n":"AQAB","e":"AQAB"}]}"#,
    );
    let mut retention = KeyRetention::new(Duration::ZERO, KeyCap::UNLIMITED, &["sig".to_owned()]);
    assert_eq!(
        retention.publish(upstream, t0()).unwrap_err(),
        Unpublishable::NoSigningKeyLeft
    );
}

#[test]
fn retention_stays_under_a_total_cap_too() {
    let cap = KeyCap {
        total: Some(3),
        ..KeyCap::UNLIMITED
    };
    let mut retention = KeyRetention::new(Duration::from_secs(3600), cap, &[]);
    retention.publish(set_of(&[("RSA", "r1"), ("EC", "e1")]), t0()).unwrap();
    retention
        .publish(set_of(&[("RSA", "r2"), ("EC", "e2")]), at(1))
        .unwrap();
    // r1 and e1 were removed at the same time; one of them fits beside the two new keys.
    let body = retention
        .publish(set_of(&[("RSA", "r2"), ("EC", "e2")]), at(2))
        .unwrap()
        .0;
    assert_eq!(kids(&body).len(), 3, "{:?}", kids(&body));
}
