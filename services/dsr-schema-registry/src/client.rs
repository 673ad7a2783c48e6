//! A small client of the Confluent Schema Registry REST API: what a dsr process needs to
//! register its schemas and to fetch a writer schema by id, against dsr's own registry or a
//! user's.

use serde::Deserialize;

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("schema registry at {url} is not reachable: {source} (is `dsr up` or your registry running? check --schema-registry)")]
    Unreachable {
        url: String,
        #[source]
        source: reqwest::Error,
    },
    #[error("schema registry at {url} refused {what}: HTTP {status}: {message}")]
    Refused {
        url: String,
        what: String,
        status: u16,
        message: String,
    },
    #[error("schema id {id} is not in the schema registry at {url}")]
    UnknownId { url: String, id: u32 },
}

/// A registry at a base URL (e.g. `http://127.0.0.1:8081`).
#[derive(Clone, Debug)]
pub struct RegistryClient {
    url: String,
    http: reqwest::Client,
}

#[derive(Deserialize)]
struct IdBody {
    id: u32,
}

#[derive(Deserialize)]
struct SchemaBody {
    schema: String,
}

#[derive(Deserialize)]
struct ErrorBody {
    message: String,
}

impl RegistryClient {
    pub fn new(url: impl Into<String>) -> RegistryClient {
        RegistryClient {
            url: url.into().trim_end_matches('/').to_string(),
            http: reqwest::Client::new(),
        }
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    /// Registers `schema` (Avro JSON) under `subject`; the id (the existing one if the schema
    /// is registered already).
    pub async fn register(&self, subject: &str, schema: &str) -> Result<u32, ClientError> {
        let url = format!("{}/subjects/{subject}/versions", self.url);
        let response = self
            .http
            .post(&url)
            .header("content-type", "application/vnd.schemaregistry.v1+json")
            .json(&serde_json::json!({ "schema": schema }))
            .send()
            .await
            .map_err(|source| ClientError::Unreachable {
                url: self.url.clone(),
                source,
            })?;
        let status = response.status().as_u16();
        if status != 200 {
            let message = response
                .json::<ErrorBody>()
                .await
                .map(|e| e.message)
                .unwrap_or_default();
            return Err(ClientError::Refused {
                url: self.url.clone(),
                what: format!("registering a schema under {subject}"),
                status,
                message,
            });
        }
        let body: IdBody = response
            .json()
            .await
            .map_err(|source| ClientError::Unreachable {
                url: self.url.clone(),
                source,
            })?;
        Ok(body.id)
    }

    /// The schema with global id `id` (Avro JSON).
    pub async fn schema(&self, id: u32) -> Result<String, ClientError> {
        let url = format!("{}/schemas/ids/{id}", self.url);
        let response =
            self.http
                .get(&url)
                .send()
                .await
                .map_err(|source| ClientError::Unreachable {
                    url: self.url.clone(),
                    source,
                })?;
        match response.status().as_u16() {
            200 => {
                let body: SchemaBody =
                    response
                        .json()
                        .await
                        .map_err(|source| ClientError::Unreachable {
                            url: self.url.clone(),
                            source,
                        })?;
                Ok(body.schema)
            }
            404 => Err(ClientError::UnknownId {
                url: self.url.clone(),
                id,
            }),
            status => Err(ClientError::Refused {
                url: self.url.clone(),
                what: format!("schema id {id}"),
                status,
                message: response
                    .json::<ErrorBody>()
                    .await
                    .map(|e| e.message)
                    .unwrap_or_default(),
            }),
        }
    }
}
