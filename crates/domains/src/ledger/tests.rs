use super::*;
use crate::record::{validate, ValidationContext};
use crate::sharing::PlannedShare;
use time::macros::datetime;

fn record(region: &str) -> CanonicalRecord {
    let v = json!({
        "category": "administrative",
        "subject": {"kind": "institution", "role": "designated_medical_institution",
                    "id_type": "uscc", "id": "91310110666007217T", "name": "某医院"},
        "source": {"agency": "medical_insurance", "record_id": "r1", "region": region},
        "basis": {"doc_type": "penalty_decision", "doc_number": "罚〔2026〕1号", "decided_on": "2026-11-01"},
        "disclosure": {"class": "public"},
        "content": {"action": "penalty", "authority": "某医保局", "penalty_types": ["罚款"]}
    });
    validate(&v, &ValidationContext::default()).unwrap()
}

fn share(dest: &str, channel: Channel, hash: &str) -> PlannedShare {
    PlannedShare {
        destination: dest.into(),
        channel,
        rule: "rule".into(),
        payload: serde_json::value::to_raw_value(&json!({"x": hash})).unwrap(),
        payload_hash: hash.into(),
        masked: vec![("subject.id".into(), "mask_personal_id")],
        marks: None,
    }
}

fn plan(shares: Vec<PlannedShare>) -> Plan {
    Plan {
        shares,
        rules_hash: "h".into(),
        ..Plan::default()
    }
}

/// Reconcile and return what was queued, with the entries and superseded keys.
fn run(
    ledger: &mut Ledger,
    record: &CanonicalRecord,
    version: u32,
    plan: &Plan,
    correction: Option<&CorrectionMark>,
) -> (Vec<Queued>, Vec<Entry>, Vec<String>) {
    let mut entries = Vec::new();
    let mut superseded = Vec::new();
    let subject = format!(
        "{}:{}",
        record.subject.id.id_type().code(),
        record.subject.id.as_str()
    );
    let change = Change {
        record,
        subject: &subject,
        version,
        plan,
        now: datetime!(2026-11-25 10:00 +08:00),
        correction,
        marking: false,
    };
    let mut n = 0;
    let queued = ledger
        .reconcile(
            &change,
            |e| {
                entries.push(e.clone());
                n += 1;
                Ok::<_, ()>(format!("out/key{n}"))
            },
            |k| superseded.push(k.to_string()),
        )
        .unwrap();
    (queued, entries, superseded)
}

#[test]
fn a_new_record_is_published_once_and_an_unchanged_plan_sends_nothing() {
    let r = record("440106");
    let mut ledger = Ledger::default();
    let p = plan(vec![
        share("gz", Channel::PublicNotice, "a"),
        share("gz", Channel::GovShare, "b"),
    ]);
    let (q, entries, _) = run(&mut ledger, &r, 1, &p, None);
    assert_eq!(q.len(), 2);
    assert!(entries.iter().all(|e| e.kind == Kind::Share));
    assert_eq!(
        ledger.holdings[0].events[0].masked,
        vec!["subject.id (mask_personal_id)"]
    );
    let (q, _, _) = run(&mut ledger, &r, 1, &p, None);
    assert!(q.is_empty(), "nothing changed, nothing sent");
}

#[test]
fn a_channel_no_longer_allowed_is_withdrawn_and_its_queued_publication_removed() {
    let r = record("440106");
    let mut ledger = Ledger::default();
    run(
        &mut ledger,
        &r,
        1,
        &plan(vec![share("gz", Channel::PublicNotice, "a")]),
        None,
    );
    let mut closed = plan(vec![]);
    closed.refused.push(crate::sharing::Refusal {
        destination: "gz".into(),
        channel: Channel::PublicNotice,
        rule: "rule".into(),
        reason: "notice_period_ended",
    });
    let (q, entries, superseded) = run(&mut ledger, &r, 1, &closed, None);
    assert_eq!(q.len(), 1);
    assert_eq!(q[0].action, Action::Withdraw);
    assert_eq!(q[0].reason.as_deref(), Some("notice_period_ended"));
    assert_eq!(entries[0].kind, Kind::Withdrawal);
    assert_eq!(superseded, vec!["out/key1".to_string()]);
    let body: Value = serde_json::from_str(entries[0].body().get()).unwrap();
    assert_eq!(body["withdrawn"]["reason"], "notice_period_ended");
    assert!(
        body.get("subject").is_none(),
        "a withdrawal carries no content"
    );
    // Withdrawn once: the next reconciliation sends nothing.
    let (q, _, _) = run(&mut ledger, &r, 1, &closed, None);
    assert!(q.is_empty());
}

#[test]
fn republishing_after_a_withdrawal_gets_a_new_idempotency_key() {
    let r = record("440106");
    let mut ledger = Ledger::default();
    let p = plan(vec![share("gz", Channel::GovShare, "a")]);
    let (_, first, _) = run(&mut ledger, &r, 1, &p, None);
    run(&mut ledger, &r, 1, &plan(vec![]), None);
    let (q, again, _) = run(&mut ledger, &r, 1, &p, None);
    assert_eq!(q.len(), 1);
    assert_ne!(first[0].idempotency_key, again[0].idempotency_key);
}

#[test]
fn a_region_change_publishes_to_the_new_platform_and_withdraws_from_the_old() {
    let r = record("440106");
    let mut ledger = Ledger::default();
    run(
        &mut ledger,
        &r,
        1,
        &plan(vec![share("gz", Channel::GovShare, "a")]),
        None,
    );
    let moved = record("440305");
    let (q, _, _) = run(
        &mut ledger,
        &moved,
        2,
        &plan(vec![share("sz", Channel::GovShare, "b")]),
        None,
    );
    let actions: Vec<(String, Action)> = q
        .iter()
        .map(|q| (q.destination.clone(), q.action))
        .collect();
    assert_eq!(
        actions,
        vec![
            ("sz".to_string(), Action::Publish),
            ("gz".to_string(), Action::Withdraw)
        ]
    );
    assert_eq!(q[1].reason.as_deref(), Some("not_routed"));
}

#[test]
fn a_correction_reaches_every_holder_even_unchanged() {
    let r = record("440106");
    let mut ledger = Ledger::default();
    let p = plan(vec![share("gz", Channel::GovShare, "a")]);
    run(&mut ledger, &r, 1, &p, None);
    let mark = CorrectionMark {
        id: "c1".into(),
        marker: json!({"id": "c1"}),
    };
    let (q, entries, _) = run(&mut ledger, &r, 1, &p, Some(&mark));
    assert_eq!(q.len(), 1);
    assert_eq!(entries[0].kind, Kind::Correction);
    assert_eq!(entries[0].correction_id.as_deref(), Some("c1"));
}

#[test]
fn a_legacy_holding_is_withdrawn_like_any_other() {
    let r = record("440106");
    // As the format-6 step seeds it from a head a release before the ledger wrote.
    let mut ledger: Ledger = serde_json::from_value(json!({"holdings": [{
        "destination": "gz", "channel": "public_notice", "events": [{
            "at": "2026-01-01T00:00:00Z", "action": "publish", "version": 1,
            "idempotency_key": "", "rule": "before-ledger", "rules_hash": "", "legacy": true}]}]}))
    .unwrap();
    assert!(ledger.holdings[0].events[0].legacy);
    let (q, _, superseded) = run(&mut ledger, &r, 1, &plan(vec![]), None);
    assert_eq!(q.len(), 1);
    assert!(
        superseded.is_empty(),
        "no outbox key is known for a legacy holding"
    );
}

#[test]
fn a_withdrawal_supersedes_every_publication_still_queued_since_the_last_one() {
    let r = record("440106");
    let mut ledger = Ledger::default();
    let (_, first, _) = run(
        &mut ledger,
        &r,
        1,
        &plan(vec![share("gz", Channel::GovShare, "a")]),
        None,
    );
    // v2 queued while v1 may still wait: both are keyed out/key1 (each run numbers from 1).
    let (_, second, _) = run(
        &mut ledger,
        &r,
        2,
        &plan(vec![share("gz", Channel::GovShare, "b")]),
        None,
    );
    assert_eq!((first.len(), second.len()), (1, 1));
    let (q, _, superseded) = run(&mut ledger, &r, 2, &plan(vec![]), None);
    assert_eq!(q.len(), 1);
    assert_eq!(
        superseded.len(),
        2,
        "both queued publications are removed: {superseded:?}"
    );
}

/// Issue #28: a data directory of format 5 kept each record's ledger inside its head; opened by
/// this release (format 6), the same ledger answers from its own key, as of any instant, and the
/// head no longer carries it.
#[test]
fn a_ledger_kept_in_a_format_5_head_answers_the_same_from_its_own_key_after_the_upgrade() {
    use crate::store::{memory::MemoryEngine, Engine, WriteSet};
    let engine = std::sync::Arc::new(MemoryEngine::default());
    let ledger = json!({"holdings": [{"destination": "provincial", "channel": "gov_share", "events": [
        {"at": "2026-11-25T10:00:00+08:00", "action": "publish", "version": 1,
         "idempotency_key": "k1", "outbox_key": "out/provincial\u{1f}1\u{1f}00000000000000000003",
         "rule": "gov_share_all", "rules_hash": "h", "payload_hash": "p"},
        {"at": "2026-11-27T10:00:00+08:00", "action": "withdraw", "version": 1,
         "idempotency_key": "k2", "reason": "notice_period_ended", "rules_hash": "h"}]}]});
    let head = json!({"subject": "uscc:91310110666007217T", "category": "administrative",
        "version": 1, "content_hash": "c", "updated_at": "2026-11-25T10:00:00+08:00",
        "publication": ledger});
    let mut w = WriteSet::default();
    w.put("meta/format", "5");
    w.put("rec/medical_insurance\u{1f}r1", head.to_string());
    w.put("lak/k1", r#"{"at":"2026-11-25T11:00:00+08:00"}"#);
    w.put("lak/k2", r#"{"at":"2026-11-27T11:00:00+08:00"}"#);
    engine.apply(w).unwrap();

    let store = Store::over(engine.clone()).unwrap();
    let stored: Value = store
        .get_json("rec/medical_insurance\u{1f}r1")
        .unwrap()
        .unwrap();
    assert!(stored.get("publication").is_none(), "{stored}");
    let read = Ledger::read(&store, "medical_insurance", "r1").unwrap();
    assert_eq!(
        serde_json::to_value(&read).unwrap()["holdings"][0]["events"][1]["reason"],
        "notice_period_ended"
    );
    let state = |as_of| {
        let answer = query::record(&store, "medical_insurance", "r1", as_of, None)
            .unwrap()
            .expect("the record");
        let h = &answer["holdings"][0];
        (
            h["state"].as_str().map(String::from),
            h["showing_version"].as_u64(),
        )
    };
    assert_eq!(
        state(datetime!(2026-11-25 10:30 +08:00)),
        (Some("queued".into()), None)
    );
    assert_eq!(
        state(datetime!(2026-11-26 10:00 +08:00)),
        (Some("held".into()), Some(1))
    );
    assert_eq!(
        state(datetime!(2026-11-28 10:00 +08:00)),
        (Some("withdrawn".into()), None)
    );
    // A share the withdrawal superseded is known as such.
    assert!(is_superseded(&store, &entry_for_test("k1")));
    assert!(!is_superseded(&store, &entry_for_test("k2")));
}

fn entry_for_test(idempotency_key: &str) -> Entry {
    let at = datetime!(2026-11-25 10:00 +08:00);
    Entry {
        idempotency_key: idempotency_key.into(),
        destination: "provincial".into(),
        channel: Channel::GovShare,
        kind: Kind::Share,
        agency: "medical_insurance".into(),
        record_id: "r1".into(),
        version: 1,
        rule: "gov_share_all".into(),
        enqueued_at: at,
        enqueued_unix: at.unix_timestamp(),
        correction_id: None,
        payload: None,
        source: None,
    }
}
