//! The onboarding flow over HTTP as a browser would walk it (without one): link page, button,
//! Weibo's consent page, Authorize or Deny, the callback.

use std::time::SystemTime;

use weibo_relay::provider::domain::MerchantRef;

use crate::support::{location, Rig, CLIENT_ID};

/// The merchant's choice on Weibo's consent page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Authorize,
    Deny,
}

/// Each hop of one walk, for the tests to look at.
pub struct Walk {
    /// The link handed out.
    pub link: String,
    /// The URL Weibo sent the browser back to (the callback with code or error, and state).
    pub callback_url: String,
    /// The relay's answer to the callback.
    pub answer: reqwest::Response,
}

/// Walks a new link for `merchant` with `decision` as `uid`.
pub async fn walk(
    rig: &Rig,
    merchant: &str,
    uid: &str,
    decision: Decision,
    return_url: Option<&str>,
) -> Walk {
    let merchant = MerchantRef::parse(merchant).expect("a merchant ref");
    let link = rig
        .onboarding
        .create_link(&merchant, return_url, SystemTime::now())
        .await
        .expect("a link")
        .url
        .to_string();
    let callback_url = consent(rig, &link, uid, decision).await;
    let answer = rig
        .http
        .get(&callback_url)
        .send()
        .await
        .expect("the callback answers");
    Walk {
        link,
        callback_url,
        answer,
    }
}

/// From a link to the URL Weibo redirects back to: the page, its button, the consent page,
/// the decision.
pub async fn consent(rig: &Rig, link: &str, uid: &str, decision: Decision) -> String {
    let page = rig
        .http
        .get(link)
        .send()
        .await
        .expect("the link page answers");
    assert_eq!(page.status(), 200, "the link page");
    let pressed = rig
        .http
        .post(link)
        .send()
        .await
        .expect("the button answers");
    assert_eq!(pressed.status(), 303, "the button redirects");
    let authorize = location(&pressed);
    assert!(
        authorize.starts_with(&format!("{}/oauth2/authorize?", rig.sandbox.base_url())),
        "{authorize}"
    );
    let consent_page = rig
        .http
        .get(&authorize)
        .send()
        .await
        .expect("the consent page");
    assert_eq!(consent_page.status(), 200, "the consent page");
    let query = crate::support::query_of(&authorize);
    let state = query.get("state").cloned().unwrap_or_default();
    assert_eq!(query.get("client_id").map(String::as_str), Some(CLIENT_ID));
    let decided = rig
        .http
        .post(format!("{}/oauth2/authorize", rig.sandbox.base_url()))
        .form(&[
            ("client_id", CLIENT_ID),
            ("redirect_uri", rig.config.redirect_uri.as_str()),
            ("response_type", "code"),
            ("state", &state),
            ("uid", uid),
            (
                "decision",
                match decision {
                    Decision::Authorize => "authorize",
                    Decision::Deny => "deny",
                },
            ),
        ])
        .send()
        .await
        .expect("the decision answers");
    assert_eq!(decided.status(), 302, "Weibo redirects back");
    location(&decided)
}

/// The outbox events of `merchant` as `(routing_key, body)`.
pub async fn events(rig: &Rig, merchant: &str) -> Vec<(String, serde_json::Value)> {
    rig.db
        .store
        .events_of(merchant)
        .await
        .expect("the outbox reads")
        .into_iter()
        .map(|row| {
            (
                row.routing_key,
                serde_json::from_str(&row.body).expect("a JSON body"),
            )
        })
        .collect()
}

/// Onboards `merchant` as `uid` through the whole HTTP flow and checks it worked.
pub async fn onboard(rig: &Rig, merchant: &str, uid: &str) {
    let walk = walk(rig, merchant, uid, Decision::Authorize, None).await;
    assert_eq!(walk.answer.status(), 200, "the result page");
}
