use cutover_domain::{Role, Timestamp, TokenSecret};
use cutover_store::Store;

use crate::{owner, setup};

cutover_store::contract_tests!(
    a_session_acts_as_its_token_until_signed_out,
    a_session_ends_with_its_expiry_or_its_token,
    sessions_are_stored_only_as_hashes,
);

fn in_an_hour() -> Timestamp {
    Timestamp::from_micros(Timestamp::now().as_micros() + 3_600_000_000)
}

async fn a_session_acts_as_its_token_until_signed_out(store: Store) {
    let (ws, actor) = setup(&store).await;
    let (token, secret) = store.create_token(&owner(&ws.id, &actor), "editor", Role::Editor, &[]).await.unwrap();
    let session = TokenSecret::generate();
    store.create_ui_session(&session.hash(), &token.id, in_an_hour()).await.unwrap();
    let found = store.ui_session_token(&session.hash()).await.unwrap().expect("a live session");
    assert!(found.matches(&secret.hash()));
    assert!(store.ui_session_token(&TokenSecret::generate().hash()).await.unwrap().is_none());

    store.end_ui_session(&session.hash()).await.unwrap();
    assert!(store.ui_session_token(&session.hash()).await.unwrap().is_none());
    store.end_ui_session(&session.hash()).await.unwrap();
}

async fn a_session_ends_with_its_expiry_or_its_token(store: Store) {
    let (ws, actor) = setup(&store).await;
    let (token, _) = store.create_token(&owner(&ws.id, &actor), "viewer", Role::Viewer, &[]).await.unwrap();
    let expired = TokenSecret::generate();
    store.create_ui_session(&expired.hash(), &token.id, Timestamp::now()).await.unwrap();
    assert!(store.ui_session_token(&expired.hash()).await.unwrap().is_none(), "expired");

    let live = TokenSecret::generate();
    store.create_ui_session(&live.hash(), &token.id, in_an_hour()).await.unwrap();
    assert!(store.ui_session_token(&live.hash()).await.unwrap().is_some());
    store.revoke_token(&owner(&ws.id, &actor), &token.id).await.unwrap();
    assert!(store.ui_session_token(&live.hash()).await.unwrap().is_none(), "its token was revoked");
}

async fn sessions_are_stored_only_as_hashes(store: Store) {
    let (ws, actor) = setup(&store).await;
    let (token, _) = store.create_token(&owner(&ws.id, &actor), "editor", Role::Editor, &[]).await.unwrap();
    let session = TokenSecret::generate();
    store.create_ui_session(&session.hash(), &token.id, in_an_hour()).await.unwrap();
    let query = "SELECT COUNT(*) FROM ui_sessions WHERE hash = $1";
    let count = |value: String| {
        let store = store.clone();
        async move {
            let (n,): (i64,) = match store.postgres_pool() {
                Some(pool) => sqlx::query_as(query).bind(value).fetch_one(pool).await.unwrap(),
                None => {
                    let pool =
                        sqlx::SqlitePool::connect(&format!("sqlite://{}", store.sqlite_path().unwrap())).await.unwrap();
                    sqlx::query_as(query).bind(value).fetch_one(&pool).await.unwrap()
                }
            };
            n
        }
    };
    assert_eq!(count(session.expose().to_owned()).await, 0, "the cookie itself is not stored");
    assert_eq!(count(session.hash().as_str().to_owned()).await, 1, "its sha256 is");
}
