//! The HTTP client every simulator uses to call the relay (webhooks, SNS,
//! callbacks): loopback only, so no proxy, and redirects are not followed
//! (platforms do not follow them either).

pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("HTTP client builds with static settings")
}
