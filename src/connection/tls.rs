//! TLS with rustls. The configuration is built once per connector; the server name is chosen
//! per connection from the host being dialled, so a handoff to a new host name verifies the new
//! name.

use std::sync::Arc;

use rustls::pki_types::ServerName;
use rustls::{ClientConfig, RootCertStore};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;

use crate::connection::options::TlsOptions;
use crate::endpoint::Endpoint;
use crate::error::Error;

pub(crate) fn client_config(options: &TlsOptions) -> Result<Arc<ClientConfig>, Error> {
    let mut roots = RootCertStore::empty();
    if options.webpki_roots {
        roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    }
    for cert in &options.root_certificates {
        roots.add(cert.clone()).map_err(|e| Error::Tls {
            message: format!("cannot trust the given root certificate: {e}").into(),
        })?;
    }
    if roots.is_empty() {
        return Err(Error::Tls {
            message: "no trusted root certificates: add one or keep the webpki roots".into(),
        });
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::Tls {
            message: e.to_string().into(),
        })?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

pub(crate) async fn wrap(
    config: Arc<ClientConfig>,
    endpoint: &Endpoint,
    tcp: TcpStream,
) -> Result<TlsStream<TcpStream>, Error> {
    let name = ServerName::try_from(endpoint.host().to_string()).map_err(|e| Error::Tls {
        message: format!("{:?} is not a valid TLS server name: {e}", endpoint.host()).into(),
    })?;
    TlsConnector::from(config)
        .connect(name, tcp)
        .await
        .map_err(|e| Error::Tls {
            message: format!("handshake with {endpoint} failed: {e}").into(),
        })
}
