//! PostgresSource against a real server: the conformance suite, type mapping, streaming.
//!
//! The server is `RSE_POSTGRES_URL` (default the local one); each test works in its own
//! schema and drops it. Unreachable: skipped, or failed when `CI=true`.
#![cfg(feature = "postgres")]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use futures::StreamExt;
use rse_core::testing::{
    check_empty_source, check_missing_column, check_missing_model, check_null_key, check_source, source_fixture,
};
use rse_core::{DataType, Decimal, ReadRequest, Record, Source, SourceError, Value};
use rse_sources::Model;
use rse_sources::postgres::PostgresSource;
use tokio_postgres::Client;

#[path = "../../rse-connectors/tests/support/pg.rs"]
mod pg;

/// A schema of its own for one test, dropped at the end of it.
struct TestSchema {
    client: Client,
    name: String,
    url: String,
}

impl TestSchema {
    async fn new() -> Option<Self> {
        let (client, name) = pg::fresh_schema("rse_src").await?;
        Some(Self { client, name, url: pg::url() })
    }

    async fn exec(&self, sql: &str) {
        self.client.batch_execute(&format!("SET search_path TO \"{}\"; {sql}", self.name)).await.unwrap();
    }

    fn source(&self, model: Model) -> PostgresSource {
        PostgresSource::from_url(&self.url, model).unwrap()
    }

    fn table(&self, name: &str) -> Model {
        Model::qualified(&self.name, name)
    }

    async fn drop(self) {
        self.client.batch_execute(&format!("DROP SCHEMA \"{}\" CASCADE", self.name)).await.unwrap();
    }

    async fn fixture(&self) {
        // Under a locale collation (ICU's root locale where the server has it) "a" sorts
        // before "B"; a source that forgot `COLLATE "C"` would fail the key-order check.
        let icu = self.client.query("SELECT 1 FROM pg_collation WHERE collname = 'und-x-icu'", &[]).await.unwrap();
        let collate = if icu.is_empty() { "" } else { r#"COLLATE "und-x-icu""# };
        self.exec(&format!(
            "CREATE TABLE model (region text {collate}, id int8, name text, score float8, updated_at int8)"
        ))
        .await;
        let insert = format!("INSERT INTO \"{}\".model VALUES ($1, $2, $3, $4, $5)", self.name);
        for r in source_fixture().rows {
            let v = &r.values;
            let name: Option<&str> = v[2].as_str();
            let score = match v[3] {
                Value::Float(f) => f,
                _ => unreachable!(),
            };
            self.client
                .execute(&insert, &[&v[0].as_str(), &v[1].as_i64(), &name, &score, &v[4].as_i64()])
                .await
                .unwrap();
        }
    }
}

async fn read_all(source: &dyn Source, request: ReadRequest) -> Result<Vec<Record>, SourceError> {
    let mut stream = source.read(request).await?;
    let mut out = Vec::new();
    while let Some(batch) = stream.next().await {
        out.extend(batch?.records);
    }
    Ok(out)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tables_views_and_queries_pass_the_conformance_suite() {
    let Some(db) = TestSchema::new().await else { return };
    db.fixture().await;
    // A locale collation on the column would order "B" after "a"; the source must not care.
    db.exec("CREATE VIEW model_view AS SELECT * FROM model").await;
    let fixture = source_fixture();
    let query = Model::query(format!("SELECT region, id, name, score, updated_at FROM \"{}\".model", db.name));
    for model in [db.table("model"), db.table("model_view"), query] {
        let source = db.source(model.clone()).with_key(["region", "id"]).with_cursor("updated_at");
        check_source(&source, &fixture).await.unwrap_or_else(|e| panic!("{model:?}: {e}"));
    }
    db.drop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn empty_missing_and_null_key_models() {
    let Some(db) = TestSchema::new().await else { return };
    db.fixture().await;
    db.exec("CREATE TABLE empty (id int4, updated_at int8)").await;
    check_empty_source(&db.source(db.table("empty")).with_key(["id"]).with_cursor("updated_at")).await.unwrap();
    check_missing_model(&db.source(db.table("no_such_model")).with_key(["id"]), "no_such_model").await.unwrap();
    check_missing_column(&db.source(db.table("model")).with_key(["region", "customer_id"]), "customer_id")
        .await
        .unwrap();
    check_missing_column(&db.source(db.table("model")).with_key(["id"]).with_cursor("modified"), "modified")
        .await
        .unwrap();
    db.exec(
        "CREATE TABLE nullable (id text, n int4); INSERT INTO nullable VALUES ('b', 1), (NULL, 2), ('a', 3), ('B', 4)",
    )
    .await;
    check_null_key(&db.source(db.table("nullable")).with_key(["id"]), "id", 4).await.unwrap();
    db.drop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_common_type_maps_exactly() {
    let Some(db) = TestSchema::new().await else { return };
    db.exec(
        r#"CREATE TABLE typed (
             i2 int2, i4 int4, i8 int8, n numeric(40, 10), f4 float4, f8 float8, b bool,
             t text, v varchar(10), c char(3), u uuid, d date, ts timestamp, tstz timestamptz,
             j json, jb jsonb, by bytea, ai int4[], at text[], a2 int8[][]);
           INSERT INTO typed VALUES (
             -32768, 2147483647, -9223372036854775808, 123456789012345678901234567890.0123456789,
             0.5, 0.1, true, 'héllo', 'v', 'ab', 'A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11',
             '2024-02-29', '2024-06-01 12:30:00.123456', '2024-06-01 12:30:00+02',
             '{"b": 1, "a": [true, null]}', '{"z": 1.5, "a": "x"}', '\x00ff', '{1, NULL, 3}',
             '{"x", "y z"}', '{{1, 2}, {3, 4}}');
           INSERT INTO typed (i2) VALUES (NULL);"#,
    )
    .await;
    let source = db.source(db.table("typed"));
    let schema = source.schema().await.unwrap();
    let types: Vec<DataType> = schema.fields().iter().map(|f| f.data_type.clone()).collect();
    use DataType as T;
    assert_eq!(
        types,
        [
            T::Int,
            T::Int,
            T::Int,
            T::Decimal,
            T::Float,
            T::Float,
            T::Bool,
            T::String,
            T::String,
            T::String,
            T::String,
            T::Date,
            T::Timestamp,
            T::Timestamp,
            T::Json,
            T::Json,
            T::Bytes,
            T::List(Box::new(T::Int)),
            T::List(Box::new(T::String)),
            T::List(Box::new(T::Int)),
        ]
    );
    let rows = read_all(&source, ReadRequest::full()).await.unwrap();
    let full = rows.iter().find(|r| !r.values[1].is_null()).unwrap();
    let june_first = 1_717_200_000_000_000i64;
    let expected = vec![
        Value::Int(-32768),
        Value::Int(2_147_483_647),
        Value::Int(i64::MIN),
        Value::Decimal(Decimal::parse("123456789012345678901234567890.0123456789").unwrap()),
        Value::Float(0.5),
        Value::Float(0.1),
        Value::Bool(true),
        Value::from("héllo"),
        Value::from("v"),
        Value::from("ab "),
        Value::from("a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"),
        Value::Date(19_782),
        Value::Timestamp(june_first + 45_000_123_456),
        Value::Timestamp(june_first + 37_800_000_000),
        Value::Json(serde_json::json!({"a": [true, null], "b": 1})),
        Value::Json(serde_json::json!({"a": "x", "z": 1.5})),
        Value::Bytes(vec![0, 255].into()),
        Value::List(vec![Value::Int(1), Value::Null, Value::Int(3)]),
        Value::List(vec![Value::from("x"), Value::from("y z")]),
        Value::List(vec![
            Value::List(vec![Value::Int(1), Value::Int(2)]),
            Value::List(vec![Value::Int(3), Value::Int(4)]),
        ]),
    ];
    for (i, (got, want)) in full.values.iter().zip(&expected).enumerate() {
        assert_eq!(got, want, "column {}", schema.fields()[i].name);
    }
    let empty = rows.iter().find(|r| r.values[1].is_null()).unwrap();
    assert!(empty.values.iter().all(Value::is_null));
    db.drop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unmappable_types_and_values_name_their_column() {
    let Some(db) = TestSchema::new().await else { return };
    db.exec("CREATE TABLE odd (id int4, wait interval)").await;
    let err = db.source(db.table("odd")).schema().await.unwrap_err();
    assert!(
        matches!(&err, SourceError::UnsupportedType { column, native_type, .. } if column == "wait" && native_type == "interval"),
        "{err:?}"
    );
    db.exec("CREATE TABLE special (id int4, amount numeric, at timestamptz); INSERT INTO special VALUES (1, 'NaN', now()), (2, 1, 'infinity')")
        .await;
    let query = |cols: &str| Model::query(format!("SELECT id, {cols} FROM \"{}\".special", db.name));
    let err = read_all(&db.source(query("amount")), ReadRequest::full()).await.unwrap_err();
    assert!(matches!(&err, SourceError::Malformed { location, .. } if location.contains("`amount`")), "{err:?}");
    let err = read_all(&db.source(query("at")), ReadRequest::full()).await.unwrap_err();
    assert!(matches!(&err, SourceError::Malformed { location, .. } if location.contains("`at`")), "{err:?}");
    db.drop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timestamp_and_text_cursors_keep_ties_at_the_boundary() {
    let Some(db) = TestSchema::new().await else { return };
    db.exec(
        "CREATE TABLE events (id int4, at timestamptz, local timestamp, day date, tag text, amount numeric);
         INSERT INTO events VALUES
           (1, '2024-01-01 00:00:00+00', '2024-01-01 00:00:00', '2024-01-01', 'B', 1.5),
           (2, '2024-01-01 00:00:01.000001+00', '2024-01-01 00:00:01.000001', '2024-01-02', 'a', 2.25),
           (3, '2024-01-01 00:00:01.000001+00', '2024-01-01 00:00:01.000001', '2024-01-02', 'a', 2.25),
           (4, '2024-01-02 00:00:00+00', '2024-01-02 00:00:00', '2024-01-03', 'é', 3),
           (5, NULL, NULL, NULL, NULL, NULL);",
    )
    .await;
    let tie = 1_704_067_201_000_001i64; // 2024-01-01T00:00:01.000001Z
    for (column, cursor) in [
        ("at", Value::Timestamp(tie)),
        ("local", Value::Timestamp(tie)),
        ("day", Value::Date(19_724)),
        ("tag", Value::from("a")),
        ("amount", Value::Decimal(Decimal::parse("2.25").unwrap())),
    ] {
        let source = db.source(db.table("events")).with_key(["id"]).with_cursor(column);
        let rows =
            read_all(&source, ReadRequest::full().with_cursor(Some(cursor)).with_order_by_key(true)).await.unwrap();
        let ids: Vec<i64> = rows.iter().map(|r| r.values[0].as_i64().unwrap()).collect();
        assert_eq!(ids, [2, 3, 4], "cursor on `{column}`");
    }
    db.drop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_tables_stream_in_batches_of_the_requested_size() {
    let Some(db) = TestSchema::new().await else { return };
    db.exec("CREATE TABLE big AS SELECT g AS id, md5(g::text) AS payload FROM generate_series(1, 25000) AS g").await;
    let source = db.source(db.table("big")).with_key(["id"]);
    let mut stream = source.read(ReadRequest::full().with_order_by_key(true).with_batch_size(1000)).await.unwrap();
    let (mut batches, mut next_id) = (0, 1);
    while let Some(batch) = stream.next().await {
        let batch = batch.unwrap();
        assert!(batch.len() <= 1000);
        for r in &batch.records {
            assert_eq!(r.values[0], Value::Int(next_id));
            next_id += 1;
        }
        batches += 1;
    }
    assert_eq!((next_id - 1, batches), (25_000, 25));
    // Dropping a stream part-way leaves the source usable.
    let mut stream = source.read(ReadRequest::full().with_batch_size(10)).await.unwrap();
    assert_eq!(stream.next().await.unwrap().unwrap().len(), 10);
    drop(stream);
    assert_eq!(read_all(&source, ReadRequest::full()).await.unwrap().len(), 25_000);
    db.drop().await;
}

#[cfg(feature = "postgres-tls")]
mod tls {
    use std::sync::Arc;

    use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
    use rustls::crypto::{CryptoProvider, verify_tls12_signature, verify_tls13_signature};
    use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
    use rustls::{DigitallySignedStruct, SignatureScheme};

    use super::*;

    /// Trusts any certificate (the local server's is self-signed for another host name) but
    /// still checks the handshake signatures: enough to prove the session is TLS.
    #[derive(Debug)]
    struct AnyCertificate(Arc<CryptoProvider>);

    impl ServerCertVerifier for AnyCertificate {
        fn verify_server_cert(
            &self,
            _: &CertificateDer<'_>,
            _: &[CertificateDer<'_>],
            _: &ServerName<'_>,
            _: &[u8],
            _: UnixTime,
        ) -> Result<ServerCertVerified, rustls::Error> {
            Ok(ServerCertVerified::assertion())
        }

        fn verify_tls12_signature(
            &self,
            message: &[u8],
            cert: &CertificateDer<'_>,
            dss: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            verify_tls12_signature(message, cert, dss, &self.0.signature_verification_algorithms)
        }

        fn verify_tls13_signature(
            &self,
            message: &[u8],
            cert: &CertificateDer<'_>,
            dss: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            verify_tls13_signature(message, cert, dss, &self.0.signature_verification_algorithms)
        }

        fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
            self.0.signature_verification_algorithms.supported_schemes()
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn reads_over_tls_when_configured() {
        let Some(db) = TestSchema::new().await else { return };
        let ssl = db.client.query_one("SHOW ssl", &[]).await.unwrap();
        if ssl.get::<_, String>(0) != "on" {
            eprintln!("skipping: the PostgreSQL server has ssl = off");
            db.drop().await;
            return;
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .unwrap()
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AnyCertificate(provider)))
            .with_no_client_auth();
        let model = Model::query("SELECT ssl, 1 AS id FROM pg_stat_ssl WHERE pid = pg_backend_pid()");
        let source = db.source(model).with_key(["id"]).with_tls(config);
        let rows = read_all(&source, ReadRequest::full()).await.unwrap();
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].values[0], Value::Bool(true), "the session is encrypted");
        db.drop().await;
    }
}
