//! The connect pages' HTML: server-rendered, no script, one inline style sheet allowed by its
//! hash, nothing loaded from anywhere.

use base64::Engine;
use maud::{html, Markup, PreEscaped, DOCTYPE};
use sha2::{Digest, Sha256};

/// The pages' only style: inline, allowed by the hash in the Content-Security-Policy.
pub const CSS: &str = "body{font-family:system-ui,sans-serif;max-width:34rem;margin:3rem auto;\
padding:0 1rem;color:#1f2328;line-height:1.5}h1{font-size:1.4rem}.card{border:1px solid #d0d7de;\
border-radius:8px;padding:1.5rem}button{font-size:1rem;padding:.6rem 1.4rem;border:0;\
border-radius:6px;background:#e6162d;color:#fff;cursor:pointer}.muted{color:#656d76;\
font-size:.9rem}.ok{color:#1a7f37}.bad{color:#cf222e}ul{padding-left:1.2rem}";

/// `'sha256-..'` of [`CSS`], for `style-src`.
pub fn css_source() -> String {
    let hash = Sha256::digest(CSS.as_bytes());
    format!(
        "'sha256-{}'",
        base64::engine::general_purpose::STANDARD.encode(hash)
    )
}

fn page(title: &str, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                meta name="referrer" content="no-referrer";
                title { (title) }
                style { (PreEscaped(CSS)) }
            }
            body { main class="card" { (body) } }
        }
    }
}

/// `/connect/<id>`: who asks, what for, one button.
pub fn connect(provider: &str, merchant_ref: &str) -> Markup {
    page(
        "Connect your Weibo shop",
        html! {
            h1 { "Connect your Weibo shop to " (provider) }
            p { "Merchant: " strong { (merchant_ref) } }
            p { (provider) " asks to act for your shop on Weibo e-commerce:" }
            ul {
                li { "receive your shop's order events" }
                li { "report orders fulfilled or closed" }
                li { "read your orders back to reconcile them" }
            }
            p class="muted" {
                "The button takes you to Weibo, where you sign in and approve. "
                "You can withdraw this at any time in your Weibo account."
            }
            form method="post" {
                button type="submit" id="connect" { "Continue to Weibo" }
            }
        },
    )
}

/// A page that ends the flow here: a refusal (link or state) or the result without a
/// return URL.
pub fn message(title: &str, class: &str, lines: &[&str]) -> Markup {
    page(
        title,
        html! {
            h1 class=(class) id="result" { (title) }
            @for line in lines { p { (line) } }
        },
    )
}
