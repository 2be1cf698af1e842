//! Sign-up, login, password-reset and magic-link mails in English, shaped like real ones
//! (written for these tests): codes in headings, tables, split cells, the subject only;
//! links behind tracking redirects; decoys of dates, prices, phone numbers, order numbers
//! and footer addresses.

use crate::mail::extract::tests::{Case, check_corpus};

#[test]
fn english_corpus() {
    check_corpus(&cases());
}

fn cases() -> Vec<Case> {
    vec![
        Case::new("slack_style_grouped_code", "Slack confirmation code: 482-913")
            .html(r#"<table width="100%" cellpadding="0"><tr><td style="padding:24px">
<h1 style="font-size:30px">Confirm your email address</h1>
<p style="font-size:16px">Your confirmation code is below — enter it in your open browser window and we'll help you get signed in.</p>
<div style="background-color:#F5F4F5;padding:24px;font-size:30px;letter-spacing:6px;text-align:center">482-913</div>
<p>If you didn't request this email, there's nothing to worry about — you can safely ignore it.</p>
</td></tr>
<tr><td style="color:#696969;font-size:12px"><a href="https://slack.test/legal">Our Blog</a> | <a href="https://slack.test/policy">Policies</a> | <a href="https://slack.test/help">Help Center</a><br>
©2026 Slack Technologies, LLC, a Salesforce company.<br>500 Howard Street, San Francisco, CA 94105<br>All rights reserved.</td></tr></table>"#)
            .code("482913"),
        Case::new("text_code_with_footer_address", "Verify your Acme account")
            .text("Hi Dana,\n\nThanks for signing up for Acme!\n\nYour verification code is 731904.\n\nThis code expires in 10 minutes. If you didn't create an account, you can ignore this message.\n\n— The Acme team\nAcme Inc., 1600 Market Street, Suite 1200, Philadelphia, PA 19103\n")
            .code("731904"),
        Case::new("google_style_prefixed_code", "G-582014 is your Google verification code")
            .text("G-582014 is your Google verification code.\n\nDon't share it with anyone. Google will never ask for it.\n")
            .code("582014"),
        Case::new("subject_only_code", "Your Acme sign-in code is 193847")
            .text("Someone (hopefully you) asked to sign in to Acme on Chrome, Windows 11.\n\nUse the code in the subject line to finish signing in. It is valid for 15 minutes.\n\nNot you? Reset your password: https://acme.test/account/security\n")
            .code("193847"),
        Case::new("code_after_its_keyword_reversed", "Acme")
            .text("482913 is your Acme verification code. It expires at 14:30.\n\nDo not share this code. Acme staff will never ask for it.\n")
            .code("482913"),
        Case::new("split_digits_in_table_cells", "Your Acme verification code")
            .html(r#"<p>Hello,</p><p>Enter this code on the sign-up page to verify your email:</p>
<table role="presentation" style="margin:0 auto"><tr>
<td style="border:1px solid #ddd;font-size:28px;padding:8px">5</td>
<td style="border:1px solid #ddd;font-size:28px;padding:8px">0</td>
<td style="border:1px solid #ddd;font-size:28px;padding:8px">9</td>
<td style="border:1px solid #ddd;font-size:28px;padding:8px">3</td>
<td style="border:1px solid #ddd;font-size:28px;padding:8px">1</td>
<td style="border:1px solid #ddd;font-size:28px;padding:8px">7</td>
</tr></table>
<p>The code is valid for 30 minutes. Sent on March 3, 2026 at 09:41.</p>"#)
            .code("509317"),
        Case::new("alphanumeric_passcode", "Your one-time passcode")
            .html(r#"<div style="font-family:Arial"><p>Use the following one-time passcode to log in to your Globex account:</p>
<p style="font-size:26px;font-weight:bold;letter-spacing:4px">K7Q2ZP</p>
<p>Passcodes are case-insensitive. Need help? Call 1-800-555-0199 (Mon-Fri, 9am-5pm).</p></div>"#)
            .code("K7Q2ZP"),
        Case::new("order_decoys_then_security_code", "Security code for your order")
            .text("Order #A-99381 — thanks for shopping with Globex!\n\nOrder date: 12/05/2026\nTotal: $149.99 (incl. $12.00 tax)\nQuestions? Call (555) 123-4567.\n\nTo confirm this payment, enter the security code 8125 in the checkout window.\n")
            .code("8125"),
        Case::new("magic_link_with_code", "Log in to Notable")
            .html(r#"<h2>Log in to Notable</h2>
<p>Click the button below to log in. This link expires in 20 minutes.</p>
<p><a href="https://www.notable.test/loginwithemail?token=Z2F0ZWtlZXBlcjQ4Mjkx&amp;email=qa%40mayfly.test" style="background:#2e7de1;color:#fff;padding:12px 24px">Log in to Notable</a></p>
<p>Or copy and paste this temporary login code:</p>
<p><code>260447</code></p>
<p>If you didn't try to log in, you can safely ignore this email.</p>
<p style="color:#999"><a href="https://www.notable.test/help">Help</a> · Notable Labs, 548 Market St, San Francisco, CA 94104</p>"#)
            .code("260447")
            .verify("https://www.notable.test/loginwithemail?token=Z2F0ZWtlZXBlcjQ4Mjkx&email=qa%40mayfly.test"),
        Case::new("password_reset_behind_tracking", "Reset your password")
            .html(r#"<p>Hi there,</p>
<p>We received a request to reset the password for your Initech account (qa@mayfly.test).</p>
<p><a href="https://u1234567.ct.sendgrid.test/ls/click?upn=u001.Xk9fPq2Lm7Vn3Rt8Ws1Yz4Ab6Cd0Ef-2FGh5Ij&amp;lid=88">Reset password</a></p>
<p>This link will expire in 60 minutes. If you didn't request a reset, ignore this email; your password won't change.</p>
<p>Request ID: 5521 · Initech, 4120 Freidrich Lane, Austin, TX 78744</p>
<p><a href="https://initech.test/privacy">Privacy</a> | <a href="https://initech.test/terms">Terms</a></p>"#)
            .verify("https://u1234567.ct.sendgrid.test/ls/click?upn=u001.Xk9fPq2Lm7Vn3Rt8Ws1Yz4Ab6Cd0Ef-2FGh5Ij&lid=88"),
        Case::new("verify_link_text_only", "Please confirm your email")
            .text("Welcome to Hooli!\n\nConfirm your email address by visiting the link below:\n\nhttps://accounts.hooli.test/confirm?t=9c1f4e27b8a34d56a0e1b2c3d4e5f607.\n\nIf you did not sign up for Hooli, ignore this email.\n\nHooli, 500 Terry Francine St, San Francisco, CA 94158\nhttps://hooli.test/privacy\n")
            .verify("https://accounts.hooli.test/confirm?t=9c1f4e27b8a34d56a0e1b2c3d4e5f607"),
        Case::new("magic_sign_in_button", "Sign in to Umbrella")
            .html(r#"<table><tr><td><img src="cid:logo" alt="Umbrella"></td></tr>
<tr><td><p>Hi! Click the button below to sign in to Umbrella. The link can be used once and expires in 15 minutes.</p>
<a href="https://click.umbrella.test/f/a/Jq7nYv3kQ2pL9sXw4TbR8eHc1Mz6Gd5Uo0Af~~/AAQRxRA~/RgRnK"><strong>Sign in to Umbrella</strong></a></td></tr>
<tr><td><p>Didn't request this? You can ignore this message.</p>
<a href="https://click.umbrella.test/f/a/Hx2Lw8Qe5Rt1Yu7Io3Pa9Sd4Fg6Hj0Kl~~/AAQRxRA~/RgRnL">Log in</a> |
<a href="https://click.umbrella.test/f/a/Zx9Cv8Bn7Mq6Wr5Et4Ry3Tu2Yi1Op0As~~/AAQRxRA~/RgRnM">Unsubscribe</a> |
<a href="https://umbrella.test/privacy">Privacy policy</a></td></tr></table>"#)
            .verify("https://click.umbrella.test/f/a/Jq7nYv3kQ2pL9sXw4TbR8eHc1Mz6Gd5Uo0Af~~/AAQRxRA~/RgRnK"),
        Case::new("activate_account_with_receipt_decoys", "Activate your Vandelay account")
            .html(r#"<p>Thanks for your purchase! Your account is almost ready.</p>
<table><tr><td>Invoice</td><td>20261104</td></tr><tr><td>Amount</td><td>$1,299.00</td></tr><tr><td>Date</td><td>November 4, 2026</td></tr></table>
<p><a href="https://vandelay.test/account/activate/7f3e9a1c">Activate account</a></p>
<p>Vandelay Industries · 129 West 81st Street, Apt 5A · New York, NY 10024 · +1 212 555 0147</p>"#)
            .verify("https://vandelay.test/account/activate/7f3e9a1c"),
        Case::new("newsletter_without_code", "Your weekly digest — 5 new posts")
            .html(r#"<h1>This week on the blog</h1>
<p>1. Scaling to 10000 users on a budget (7 min read)</p>
<p>2. What we learned from 2025</p>
<p>Prices start at $4999 per year. Offer ends June 30, 2026.</p>
<p><a href="https://blog.acme.test/posts/scaling-10000">Read more</a></p>
<p><a href="https://acme.test/email/unsubscribe?u=4a7c9e2b1d3f5a7c9e2b">Unsubscribe</a> · Acme Inc., 1 Infinite Loop, Cupertino, CA 95014</p>"#)
            .list_unsubscribe("<https://acme.test/email/unsubscribe?u=4a7c9e2b1d3f5a7c9e2b>, <mailto:unsubscribe@acme.test>"),
        Case::new("order_confirmation_has_no_code", "Order #784512 confirmed")
            .text("Thanks for your order!\n\nOrder number: 784512\nOrder confirmation 4451\nPlaced on Tuesday, 14 April 2026\nSubtotal: 89.90 EUR\nShipping to: 221B Baker Street, London NW1 6XE\nTracking number 1Z999AA10123456784\nCustomer service: +44 20 7946 0958\n")
            ,
        Case::new("code_with_copyright_and_dates", "Your login code")
            .html(r#"<p>Your login code for Pied Piper:</p>
<p style="font-size:22px"><b>917 350</b></p>
<p>Requested on Monday, March 2, 2026 from Palo Alto, CA.</p>
<p>© 2026 Pied Piper, Inc. All rights reserved.</p>"#)
            .code("917350"),
        Case::new("hex_colors_and_numeric_urls", "Confirm your sign-up")
            .html(r##"<div style="color:#333333;background-color:#ffffff">
<p style="color:#1a2b3c">Confirm your sign-up with this code:</p>
<p style="font-size:24px;color:#005599"><strong>305 817</strong></p>
<p><a href="https://cdn.acme.test/assets/2026/banner-123456.png">View banner</a> <a href="https://acme.test/r/123456/track">Track</a></p>
<p>Ticket #778899 · Ref 445566</p></div>"##)
            .code("305817"),
        Case::new("code_in_pre_block", "Your verification code")
            .html("<pre>Hello,\n\nYour verification code:\n\n    640218\n\nValid until 2026-11-04 10:30 UTC.\nSupport: support@acme.test\n</pre>")
            .code("640218"),
        Case::new("pin_with_phone_and_price", "Your PIN")
            .text("Your temporary PIN is 4821.\n\nCall us at 555 0199 if you need help. Plans from $9.99/month, 4 weeks free.\n")
            .code("4821"),
        Case::new("two_factor_with_account_number", "Two-factor authentication")
            .text("Account number: 55012345\n\nYour two-factor authentication code is:\n\n  203 948\n\nEnter it within 5 minutes. Never share it.\n")
            .code("203948"),
        Case::new("verify_button_plus_copy_link", "Verify your email for Massive Dynamic")
            .html(r#"<p>Follow this link to verify your email address.</p>
<p><a href="https://massive-dynamic.test/__/auth/action?mode=verifyEmail&amp;oobCode=Q5hKz8Wm2Xr7Tb4Nc1Vy6Ud3Ls9Pe0Ja&amp;lang=en">Verify email</a></p>
<p>If the button doesn't work, copy this URL: https://massive-dynamic.test/__/auth/action?mode=verifyEmail&amp;oobCode=Q5hKz8Wm2Xr7Tb4Nc1Vy6Ud3Ls9Pe0Ja&amp;lang=en</p>
<p>If you didn't ask to verify this address, you can ignore this email.</p>
<p><a href="https://massive-dynamic.test/unsubscribe">Unsubscribe</a></p>"#)
            .verify("https://massive-dynamic.test/__/auth/action?mode=verifyEmail&oobCode=Q5hKz8Wm2Xr7Tb4Nc1Vy6Ud3Ls9Pe0Ja&lang=en"),
        Case::new("html_only_code_emphasized_no_nearby_keyword", "Welcome to Stark — one more step")
            .html(r#"<h1>Welcome aboard!</h1>
<p>We're excited to have you. Before you get started, we need to make sure this is really your inbox. Copy the number below into the window where you signed up and you're all set; it only takes a moment and keeps your account safe.</p>
<p style="font-size:32px;letter-spacing:10px;font-weight:700">718305</p>
<p>Stark Industries · 10880 Malibu Point · Malibu, CA 90265</p>"#)
            .code("718305"),
    ]
}
