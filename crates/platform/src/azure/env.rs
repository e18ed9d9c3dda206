//! Which identity endpoint the environment names, read as Microsoft's libraries read it.
//!
//! The order is azure-identity's `ManagedIdentityCredential` (Python; the Rust SDK's
//! `ManagedIdentityCredential` checks the same variables in the same order): the first
//! source whose variables are set wins, IMDS when none is. A source this crate does not
//! speak is an error, never a fall back to IMDS: Microsoft's libraries would use it, and IMDS
//! could answer for another identity (the node's, under AKS workload identity).

/// What the environment says to use.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Detected {
    /// `IDENTITY_ENDPOINT` and `IDENTITY_HEADER`: App Service, Azure Functions, Container
    /// Apps, Azure Automation.
    AppService { endpoint: String, header: String },
    /// None of the others: a virtual machine or scale set, AKS pod identity. The authority is
    /// `AZURE_POD_IDENTITY_AUTHORITY_HOST` if set.
    Imds { authority: Option<String> },
    /// A source the provider does not speak.
    Unsupported(&'static str),
}

/// The variables that make azure-identity choose workload identity.
const WORKLOAD_IDENTITY: [&str; 3] = [
    "AZURE_AUTHORITY_HOST",
    "AZURE_TENANT_ID",
    "AZURE_FEDERATED_TOKEN_FILE",
];

/// What `var`, a lookup of the environment, names. A variable set to the empty string is
/// unset, as azure-identity's truthiness test has it.
pub(super) fn detect(var: impl Fn(&str) -> Option<String>) -> Detected {
    let var = |name: &str| var(name).filter(|value| !value.is_empty());
    if let Some(endpoint) = var("IDENTITY_ENDPOINT") {
        return match var("IDENTITY_HEADER") {
            Some(_) if var("IDENTITY_SERVER_THUMBPRINT").is_some() => {
                Detected::Unsupported("Service Fabric managed identity")
            }
            Some(header) => Detected::AppService { endpoint, header },
            None if var("IMDS_ENDPOINT").is_some() => {
                Detected::Unsupported("Azure Arc managed identity")
            }
            // azure-identity finds no managed identity here at all.
            None => Detected::Unsupported("IDENTITY_ENDPOINT without IDENTITY_HEADER"),
        };
    }
    if var("MSI_ENDPOINT").is_some() {
        return Detected::Unsupported(if var("MSI_SECRET").is_some() {
            "Azure ML managed identity"
        } else {
            "Cloud Shell managed identity"
        });
    }
    if WORKLOAD_IDENTITY.iter().all(|name| var(name).is_some()) {
        return Detected::Unsupported(
            "Azure workload identity (tower_bearer_oauth2::AzureWorkloadIdentity)",
        );
    }
    Detected::Imds {
        authority: var("AZURE_POD_IDENTITY_AUTHORITY_HOST"),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn detect_in(pairs: &[(&str, &str)]) -> Detected {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        detect(move |name| map.get(name).cloned())
    }

    #[test]
    fn sources_in_microsofts_order() {
        assert_eq!(detect_in(&[]), Detected::Imds { authority: None });
        assert_eq!(
            detect_in(&[("AZURE_POD_IDENTITY_AUTHORITY_HOST", "http://10.0.0.4:2579")]),
            Detected::Imds {
                authority: Some("http://10.0.0.4:2579".to_owned())
            }
        );
        let app_service = [
            ("IDENTITY_ENDPOINT", "http://127.0.0.1:41000/msi/token"),
            ("IDENTITY_HEADER", "h"),
        ];
        assert_eq!(
            detect_in(&app_service),
            Detected::AppService {
                endpoint: "http://127.0.0.1:41000/msi/token".to_owned(),
                header: "h".to_owned()
            }
        );
        // App Service comes before everything else that is set with it.
        let mut with_more = app_service.to_vec();
        with_more.extend([
            ("MSI_ENDPOINT", "x"),
            ("AZURE_POD_IDENTITY_AUTHORITY_HOST", "http://10.0.0.4"),
            ("IMDS_ENDPOINT", "x"),
        ]);
        assert!(matches!(detect_in(&with_more), Detected::AppService { .. }));
        for (pairs, platform) in [
            (
                &[
                    ("IDENTITY_ENDPOINT", "e"),
                    ("IDENTITY_HEADER", "h"),
                    ("IDENTITY_SERVER_THUMBPRINT", "t"),
                ][..],
                "Service Fabric",
            ),
            (
                &[("IDENTITY_ENDPOINT", "e"), ("IMDS_ENDPOINT", "i")][..],
                "Azure Arc",
            ),
            (
                &[("IDENTITY_ENDPOINT", "e")][..],
                "IDENTITY_ENDPOINT without",
            ),
            (
                &[("MSI_ENDPOINT", "e"), ("MSI_SECRET", "s")][..],
                "Azure ML",
            ),
            (&[("MSI_ENDPOINT", "e")][..], "Cloud Shell"),
            (
                &[
                    ("AZURE_AUTHORITY_HOST", "https://login.microsoftonline.com"),
                    ("AZURE_TENANT_ID", "t"),
                    ("AZURE_FEDERATED_TOKEN_FILE", "/f"),
                    ("AZURE_POD_IDENTITY_AUTHORITY_HOST", "http://10.0.0.4"),
                ][..],
                "Azure workload identity",
            ),
        ] {
            match detect_in(pairs) {
                Detected::Unsupported(named) => assert!(named.starts_with(platform), "{named}"),
                other => panic!("{pairs:?}: {other:?}"),
            }
        }
    }

    #[test]
    fn empty_variables_are_unset() {
        assert_eq!(
            detect_in(&[
                ("IDENTITY_ENDPOINT", ""),
                ("IDENTITY_HEADER", "h"),
                ("MSI_ENDPOINT", ""),
                ("AZURE_POD_IDENTITY_AUTHORITY_HOST", ""),
            ]),
            Detected::Imds { authority: None }
        );
        // Two of the three workload identity variables are not workload identity.
        assert_eq!(
            detect_in(&[
                ("AZURE_TENANT_ID", "t"),
                ("AZURE_FEDERATED_TOKEN_FILE", "/f")
            ]),
            Detected::Imds { authority: None }
        );
    }
}
