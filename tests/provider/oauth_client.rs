//! The OAuth2 client against a hostile token endpoint: a redirect is not followed (the form
//! carries the app secret and the refresh token), an endless answer is cut at 4 MiB, a silent
//! one times out, and none of their words reach an error as a token.

use std::net::TcpListener;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix_web::{web, App, HttpResponse, HttpServer};
use secrecy::SecretString;
use weibo_relay::provider::oauth::{HttpOAuthClient, OAuthClient, OAuthError};

#[tokio::test]
async fn a_hostile_token_endpoint_gets_no_secret_and_costs_bounded_memory_and_time() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let followed = Arc::new(AtomicU64::new(0));
    let seen = followed.clone();
    let server = HttpServer::new(move || {
        let seen = seen.clone();
        App::new()
            // The refresh is answered with a redirect to a page that counts visitors.
            .route(
                "/oauth2/access_token",
                web::post().to(|| async {
                    HttpResponse::TemporaryRedirect()
                        .insert_header(("location", "/stolen"))
                        .finish()
                }),
            )
            .route(
                "/stolen",
                web::to(move || {
                    let seen = seen.clone();
                    async move {
                        seen.fetch_add(1, Ordering::SeqCst);
                        HttpResponse::Ok().body("{}")
                    }
                }),
            )
            // token_info answers without end.
            .route(
                "/oauth2/get_token_info",
                web::post().to(|| async {
                    let chunk = web::Bytes::from(vec![b' '; 64 * 1024]);
                    use futures_util::StreamExt;
                    let endless =
                        futures_util::stream::repeat(chunk).map(Ok::<_, actix_web::Error>);
                    HttpResponse::Ok()
                        .content_type("application/json")
                        .streaming(endless)
                }),
            )
            // revoke never answers.
            .route(
                "/oauth2/revokeoauth2",
                web::post().to(|| async {
                    tokio::time::sleep(Duration::from_secs(30)).await;
                    HttpResponse::Ok().finish()
                }),
            )
    })
    .workers(1)
    .disable_signals()
    .shutdown_timeout(1)
    .listen(listener)
    .unwrap()
    .run();
    let handle = server.handle();
    tokio::spawn(server);

    let client = HttpOAuthClient::new(
        &base,
        "772915",
        SecretString::from("provider-client-secret-0123"),
        "http://127.0.0.1/connect/callback",
        Duration::from_secs(2),
    )
    .unwrap();
    let refused = client
        .refresh(&SecretString::from("2.00refresh-secret"))
        .await
        .unwrap_err();
    assert!(
        matches!(&refused, OAuthError::Transient(why) if why.contains("307 redirect not followed")),
        "{refused:?}"
    );
    assert!(refused.is_transient() && !refused.is_invalid_grant());
    assert_eq!(followed.load(Ordering::SeqCst), 0, "nobody got the form");

    let endless = client
        .token_info(&SecretString::from("2.00access-secret"))
        .await
        .unwrap_err();
    assert_eq!(
        endless,
        OAuthError::Transient("get_token_info: answer too large".into())
    );

    let started = Instant::now();
    let silent = client
        .revoke(&SecretString::from("2.00access-secret"))
        .await
        .unwrap_err();
    assert!(matches!(&silent, OAuthError::Transient(_)), "{silent:?}");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    for error in [&refused, &endless, &silent] {
        let text = format!("{error} {error:?}");
        assert!(!text.contains("secret"), "{text}");
    }
    handle.stop(false).await;
}
