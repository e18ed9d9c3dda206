//! A mock of Azure managed identity: IMDS, and the App Service / Container Apps identity endpoint.
