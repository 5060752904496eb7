//! A flow's texts: its templates measured with the project's name when the
//! flow is saved, and `POST /v2/project-flows/{id}/preview`, the text a
//! flow sends rendered with a sample code (docs/contract.md §14).

use crate::auth::AuthClient;
use crate::envelope::Envelope;
use crate::error::{ApiError, ApiResult};
use crate::extract::{path_id, ApiJson, RawPathId};
use crate::AppState;
use axum::extract::State;
use serde::{Deserialize, Serialize};
use shared::domain::{CountryCode, Language, PhoneSettings};
use shared::locale::{self, Args, Encoding};
use shared::ObjectId;
use sqlx::types::Json;
use utoipa::ToSchema;

/// Measures the templates with the name of `project` (the client's) as
/// `{app}`: `400:invalid_templates` if an SMS would take over 2 segments.
/// An unknown project is left to the caller's statement to answer.
pub async fn check_templates(
    pool: &sqlx::PgPool,
    client: &ObjectId,
    project: &ObjectId,
    settings: &PhoneSettings,
) -> ApiResult<()> {
    if settings.templates.is_empty() {
        return Ok(());
    }
    let name = crate::store::projects::name(pool, project, client).await?;
    match name {
        Some(name) => settings.check_templates(&name).map_err(|e| ApiError::invalid(e.0)),
        None => Ok(()),
    }
}

/// The channel whose text is previewed.
#[derive(Clone, Copy, Debug, Default, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum PreviewChannel {
    #[default]
    Sms,
    /// The sentence a call says (twice).
    Voice,
}

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PreviewRequest {
    /// Default: the flow's language, else the country's, else `en`.
    pub language: Option<Language>,
    /// Default `sms`.
    pub channel: Option<PreviewChannel>,
    /// `+` and 1–4 digits: the country whose locale is used when neither
    /// the request nor the flow names a language.
    #[schema(pattern = r"^\+[1-9][0-9]{0,3}$", example = "+55")]
    pub country_code: Option<String>,
}

/// An SMS's alphabet.
#[derive(Clone, Copy, Debug, Serialize, ToSchema)]
pub enum PreviewEncoding {
    #[serde(rename = "GSM-7")]
    Gsm7,
    #[serde(rename = "UCS-2")]
    Ucs2,
}

/// A flow's text as the user would receive it, with a sample code.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Preview {
    /// The SMS, autofill lines included; or the sentence a call says.
    pub text: String,
    /// SMS only: the parts it is billed as.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub segments: Option<usize>,
    /// SMS only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub encoding: Option<PreviewEncoding>,
    /// The locale the text is in.
    pub language: Language,
}

/// The sample code: the flow's length of `1234567890`.
const SAMPLE: &str = "1234567890";

/// Preview the text a flow sends.
#[utoipa::path(post, path = "/v2/project-flows/{id}/preview", tag = "project flows", operation_id = "previewProjectFlow",
    request_body = PreviewRequest,
    params(("id" = String, Path, description = "Project flow id", pattern = "^[0-9a-f]{24}$")),
    responses(
        (status = 200, body = crate::envelope::Success<Preview>, description = "The text, with a sample code"),
        (status = 400, description = "`invalid_language`, `invalid_channel` or `invalid_countryCode`"),
        (status = 404, description = "`projectFlow_not_found`")),
    security(("bearer" = [])))]
pub async fn preview(
    State(app): State<AppState>,
    AuthClient(client): AuthClient,
    RawPathId(id): RawPathId,
    ApiJson(body): ApiJson<PreviewRequest>,
) -> ApiResult<Envelope<Preview>> {
    let id = path_id(&id, "projectFlow")?;
    let country = body
        .country_code
        .as_deref()
        .map(CountryCode::parse)
        .transpose()
        .map_err(|_| ApiError::invalid("countryCode"))?;
    let row = crate::store::flows::settings_and_app(&app.pool, &id, &client).await?;
    let (Json(settings), app_name) = row.ok_or_else(|| ApiError::not_found("projectFlow"))?;
    let language = body
        .language
        .or(settings.language)
        .or_else(|| {
            country
                .and_then(CountryCode::main_region)
                .and_then(Language::for_region)
        })
        .unwrap_or(Language::En);
    Ok(Envelope(render(
        &settings,
        &app_name,
        language,
        body.channel.unwrap_or_default(),
    )))
}

/// The text of `settings` in `language` for `channel`, with the sample code.
fn render(settings: &PhoneSettings, app: &str, language: Language, channel: PreviewChannel) -> Preview {
    let length = usize::from(settings.otp_length).min(SAMPLE.len());
    let args = Args {
        code: &SAMPLE[..length],
        app,
        minutes: settings.otp_expires_in_seconds.div_ceil(60),
    };
    match channel {
        PreviewChannel::Sms => {
            let text = settings.templates.sms(language, &args, settings.autofill());
            let counted = locale::segments(&text);
            Preview {
                text,
                segments: Some(counted.count),
                encoding: Some(match counted.encoding {
                    Encoding::Gsm7 => PreviewEncoding::Gsm7,
                    Encoding::Ucs2 => PreviewEncoding::Ucs2,
                }),
                language,
            }
        }
        PreviewChannel::Voice => Preview {
            text: settings.templates.voice_text(language, &args),
            segments: None,
            encoding: None,
            language,
        },
    }
}
