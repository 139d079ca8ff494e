//! The refresh-token grant (RFC 6749 §6) as HubSpot and Salesforce use it
//! (/work/shared/contracts/saas-contracts.md §1 "refresh on `expires_in`", §2 "401
//! `INVALID_SESSION_ID` (refresh once)").

use std::time::Duration;

use rse_connectors::DestinationError;
use rse_connectors::saas::{OAuthRefreshConfig, SaasAuthConfig, SaasClient, SaasClientOptions, SaasRequest};
use serde_json::Value as Json;

use crate::oauth_server::{CLIENT_ID, CLIENT_SECRET, OAuthServer, REFRESH_TOKEN};

fn refresh_config(server: &OAuthServer) -> OAuthRefreshConfig {
    OAuthRefreshConfig::new(server.token_url(), CLIENT_ID, CLIENT_SECRET, REFRESH_TOKEN)
}

fn client(config: OAuthRefreshConfig) -> SaasClient {
    SaasClient::new("vendor:test", &SaasAuthConfig::from(config), SaasClientOptions::default()).unwrap()
}

/// The token generation the API saw.
async fn whoami(client: &SaasClient, server: &OAuthServer) -> Result<u64, DestinationError> {
    let response = client.send(&SaasRequest::get(server.url("/api/whoami"))).await?;
    let body: Json = response.success_or(&rse_connectors::saas::DefaultClassifier)?.json("the whoami answer")?;
    Ok(body["generation"].as_u64().unwrap())
}

/// `whoami` from sixteen writers at once, on the runtime's threads.
async fn sixteen_writers(client: &SaasClient, server: &OAuthServer) -> Vec<Result<u64, DestinationError>> {
    let mut writers = tokio::task::JoinSet::new();
    for _ in 0..16 {
        let (client, server) = (client.clone(), server.clone());
        writers.spawn(async move { whoami(&client, &server).await });
    }
    writers.join_all().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sixteen_writers_share_one_token_and_one_refresh() {
    let server = OAuthServer::start().await;
    {
        let mut s = server.lock();
        // Long enough for every writer to queue behind the one fetching.
        s.delay = Duration::from_millis(200);
        // Replaced after half its lifetime (the margin is at most half).
        s.expires_in = Some(2.0);
    }
    let client = client(refresh_config(&server));
    let first = sixteen_writers(&client, &server).await;
    assert!(first.iter().all(|g| matches!(g, Ok(1))), "{first:?}");
    assert_eq!(server.lock().token_requests, 1, "a cold start fetches one token for all writers");

    // Past half its lifetime, the token is replaced: once.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let second = sixteen_writers(&client, &server).await;
    assert!(second.iter().all(|g| matches!(g, Ok(2))), "{second:?}");
    let s = server.lock();
    assert_eq!(s.token_requests, 2);
    assert_eq!(s.api_unauthorized, 0, "no writer used an expired token");
    assert!(s.forms.iter().all(|f| f["grant_type"] == "refresh_token" && f["refresh_token"] == REFRESH_TOKEN));
}

#[tokio::test]
async fn a_token_near_its_expiry_is_replaced_before_use() {
    let server = OAuthServer::start().await;
    server.lock().expires_in = Some(4.0);
    let client = client(refresh_config(&server).with_refresh_margin(Duration::from_secs(2)));
    assert_eq!(whoami(&client, &server).await.unwrap(), 1);
    assert_eq!(whoami(&client, &server).await.unwrap(), 1, "a fresh token is reused");
    let token = client.auth().current_token().await.unwrap().unwrap();
    assert!(token.expires_in().unwrap() > Duration::from_secs(3));

    tokio::time::sleep(Duration::from_millis(2200)).await;
    // Still valid at the server for another 1.8 s, but within the margin: replaced first.
    assert_eq!(whoami(&client, &server).await.unwrap(), 2);
    let s = server.lock();
    assert_eq!((s.token_requests, s.api_unauthorized), (2, 0));
}

#[tokio::test]
async fn a_401_refreshes_once_and_retries_once() {
    let server = OAuthServer::start().await;
    server.lock().expires_in = None; // Salesforce announces no expiry
    let client = client(refresh_config(&server));
    assert_eq!(whoami(&client, &server).await.unwrap(), 1);

    server.revoke_access_tokens();
    assert_eq!(whoami(&client, &server).await.unwrap(), 2, "refused once, refreshed, sent again");
    {
        let s = server.lock();
        assert_eq!((s.token_requests, s.api_calls, s.api_unauthorized), (2, 3, 1));
    }

    // Refused again with the fresh token: the credentials themselves are refused.
    server.lock().api_refuses_all = true;
    let error = whoami(&client, &server).await.unwrap_err();
    let message = error.to_string();
    assert!(matches!(error, DestinationError::Unauthorized { .. }), "{error:?}");
    assert!(message.contains("vendor:test: HTTP 401 Unauthorized (errorCode=INVALID_SESSION_ID)"), "{message}");
    assert!(message.contains("refused a freshly fetched access token too"), "{message}");
    assert!(!message.contains("ada@"), "{message}");
    let s = server.lock();
    assert_eq!((s.token_requests, s.api_calls), (3, 5), "one refresh and one retry, no more");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn writers_refused_together_refresh_once() {
    let server = OAuthServer::start().await;
    server.lock().expires_in = None;
    let client = client(refresh_config(&server));
    assert_eq!(whoami(&client, &server).await.unwrap(), 1);
    server.revoke_access_tokens();
    server.lock().delay = Duration::from_millis(100);
    let all = sixteen_writers(&client, &server).await;
    assert!(all.iter().all(|g| matches!(g, Ok(2))), "{all:?}");
    assert_eq!(server.lock().token_requests, 2, "the writers refused after the first refresh reuse its token");
}

#[tokio::test]
async fn a_static_token_refused_is_unauthorized_without_a_refresh() {
    let server = OAuthServer::start().await;
    let auth = SaasAuthConfig::Bearer { token: "pat-na1-0000".into() };
    let client = SaasClient::new("vendor:test", &auth, SaasClientOptions::default()).unwrap();
    let error = whoami(&client, &server).await.unwrap_err();
    assert!(matches!(error, DestinationError::Unauthorized { .. }), "{error:?}");
    let s = server.lock();
    assert_eq!((s.token_requests, s.api_calls), (0, 1));
}

#[tokio::test]
async fn token_endpoint_refusals_say_what_to_fix() {
    let server = OAuthServer::start().await;
    let wrong_refresh =
        client(OAuthRefreshConfig::new(server.token_url(), CLIENT_ID, CLIENT_SECRET, "refresh-revoked"));
    let error = wrong_refresh.auth().credential().await.unwrap_err();
    let message = error.to_string();
    assert!(matches!(error, DestinationError::Unauthorized { .. }), "{error:?}");
    assert!(message.contains("`invalid_grant`") && message.contains("set `refresh_token`"), "{message}");

    let wrong_secret = client(OAuthRefreshConfig::new(server.token_url(), CLIENT_ID, "nope", REFRESH_TOKEN));
    let message = wrong_secret.auth().credential().await.unwrap_err().to_string();
    assert!(
        message.contains("`invalid_client`") && message.contains("check `client_id` and `client_secret`"),
        "{message}"
    );

    for (status, body, transient) in
        [(503, "", true), (500, "<html>oops</html>", true), (400, r#"{"error":"invalid_scope"}"#, false)]
    {
        server.lock().refuse.push((status, body.to_owned()));
        let error = client(refresh_config(&server)).auth().credential().await.unwrap_err();
        assert_eq!(matches!(error, DestinationError::Transient { .. }), transient, "{status}: {error:?}");
        assert!(transient || matches!(error, DestinationError::Fatal { .. }), "{status}: {error:?}");
    }

    server.lock().refuse.push((200, r#"{"token_type":"bearer"}"#.to_owned()));
    let error = client(refresh_config(&server)).auth().credential().await.unwrap_err().to_string();
    assert!(error.contains("has no `access_token`; check `token_url`"), "{error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_refused_refresh_is_shared_by_the_writers_that_waited_for_it() {
    let server = OAuthServer::start().await;
    {
        let mut s = server.lock();
        s.delay = Duration::from_millis(200);
        s.refuse.push((400, r#"{"error":"invalid_grant"}"#.to_owned()));
    }
    let client = client(refresh_config(&server));
    let all = sixteen_writers(&client, &server).await;
    assert!(all.iter().all(|r| matches!(r, Err(DestinationError::Unauthorized { .. }))), "{all:?}");
    assert_eq!(server.lock().token_requests, 1);
    // A later write tries again.
    assert_eq!(whoami(&client, &server).await.unwrap(), 1);
    assert_eq!(server.lock().token_requests, 2);
}

#[tokio::test]
async fn a_rotated_refresh_token_is_used_next() {
    let server = OAuthServer::start().await;
    {
        let mut s = server.lock();
        s.rotate = true;
        s.expires_in = None;
    }
    let client = client(refresh_config(&server));
    for generation in 1..=3 {
        assert_eq!(whoami(&client, &server).await.unwrap(), generation);
        server.revoke_access_tokens();
    }
    let s = server.lock();
    let sent: Vec<&str> = s.forms.iter().map(|f| f["refresh_token"].as_str()).collect();
    assert_eq!(sent[0], REFRESH_TOKEN);
    assert!(sent[1].starts_with("refresh-1-") && sent[2].starts_with("refresh-2-"), "{sent:?}");
}

#[tokio::test]
async fn no_secret_shows_in_debug_display_or_errors() {
    let server = OAuthServer::start().await;
    server.lock().instance_url = Some("https://acme.my.salesforce.example".into());
    let config = SaasAuthConfig::from(refresh_config(&server));
    let client = client(refresh_config(&server));
    let credential = client.auth().credential().await.unwrap();
    let token = client.auth().current_token().await.unwrap().unwrap();
    let access = token.secret().expose().to_owned();
    assert!(access.starts_with("access-1-"));
    assert_eq!(token.instance_url(), Some("https://acme.my.salesforce.example"));
    assert_eq!(token.scope(), Some("crm.objects.contacts.write"));
    assert_eq!(token.extra("issued_at").and_then(Json::as_str), Some("1700000000000"));
    assert!(token.extra("id_token").is_none(), "an id token is a credential of its own");

    let shown = [
        format!("{config:?}"),
        format!("{client:?}"),
        format!("{:?}", client.auth()),
        format!("{credential:?}"),
        format!("{:?}", credential.header_value()),
        format!("{token:?}"),
        format!("{}", token.secret()),
    ];
    for text in &shown {
        for secret in [CLIENT_SECRET, REFRESH_TOKEN, access.as_str(), "sig=="] {
            assert!(!text.contains(secret), "{text} shows a secret");
        }
    }

    // Errors of every kind the token endpoint can cause.
    server
        .lock()
        .refuse
        .push((400, r#"{"error":"invalid_grant","error_description":"refresh-token-c41d2b expired"}"#.into()));
    let refused = SaasClient::new("vendor:test", &config, SaasClientOptions::default()).unwrap();
    let error = refused.auth().credential().await.unwrap_err();
    for text in [error.to_string(), format!("{error:?}")] {
        assert!(!text.contains(REFRESH_TOKEN) && !text.contains(CLIENT_SECRET), "{text}");
    }
}
