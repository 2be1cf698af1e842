//! The corpus in other languages: German, French, Spanish, Portuguese, Italian, Dutch,
//! Polish, Russian, Ukrainian, Turkish, Chinese, Japanese, Korean, Arabic and Hindi, with
//! each language's own decoys (order numbers, prices, phone numbers, postal addresses).

use crate::mail::extract::tests::{Case, check_corpus};

#[test]
fn international_corpus() {
    check_corpus(&cases());
}

fn cases() -> Vec<Case> {
    vec![
        Case::new("de_text_grouped_code", "Ihr Bestätigungscode")
            .text("Hallo Jana,\n\nIhr Bestätigungscode lautet: 582 913\n\nDer Code ist 15 Minuten gültig. Bestellnummer: 30045512\n\nBei Fragen erreichen Sie uns unter Telefon +49 30 1234567.\n\nBeispiel GmbH · Musterstraße 12 · 10115 Berlin\n")
            .code("582913"),
        Case::new("de_html_activate_account", "Bitte bestätigen Sie Ihre E-Mail-Adresse")
            .html(r#"<p>Willkommen bei Beispiel!</p>
<p>Bitte klicken Sie auf den folgenden Button, um Ihr Konto zu aktivieren:</p>
<p><a href="https://www.beispiel.test/konto/aktivieren?k=a8F3kL9mQ2xR7tZ1">Konto aktivieren</a></p>
<p>Rechnung Nr. 2026-0815 vom 04.11.2026 über 49,90 €</p>
<p><a href="https://www.beispiel.test/datenschutz">Datenschutz</a> · <a href="https://www.beispiel.test/impressum">Impressum</a> · Beispiel AG, Hauptstraße 5, 80331 München</p>"#)
            .verify("https://www.beispiel.test/konto/aktivieren?k=a8F3kL9mQ2xR7tZ1"),
        Case::new("fr_html_code_with_date", "Votre code de vérification")
            .html(r#"<p>Bonjour,</p><p>Votre code de vérification est <strong>739 204</strong>.</p>
<p>Demande effectuée le 12 mars 2026 à 10h32. Ce code expire dans 10 minutes.</p>
<p>Exemple SAS, 10 rue de la Paix, 75002 Paris — Tél. 01 23 45 67 89</p>"#)
            .code("739204"),
        Case::new("fr_html_reset_password", "Réinitialisation de votre mot de passe")
            .html(r#"<p>Vous avez demandé la réinitialisation de votre mot de passe.</p>
<p><a href="https://compte.exemple.test/mdp/reinitialiser?jeton=Yk29aLq7Xe1Wn4Rt">Réinitialiser mon mot de passe</a></p>
<p>Si vous n'êtes pas à l'origine de cette demande, ignorez ce message.</p>
<p><a href="https://exemple.test/aide">Aide</a> · <a href="https://exemple.test/desinscription?u=77">Se désinscrire</a></p>"#)
            .verify("https://compte.exemple.test/mdp/reinitialiser?jeton=Yk29aLq7Xe1Wn4Rt"),
        Case::new("es_text_codigo_with_order", "Código de verificación")
            .text("Hola:\n\nTu código de verificación es 610284. Este código caduca en 10 minutos.\n\nPedido #45821 · Total: 59,90 €\nEjemplo S.L., Calle Mayor 10, 28013 Madrid\n")
            .code("610284"),
        Case::new("es_html_confirm_email", "Confirma tu correo electrónico")
            .html(r#"<p>¡Gracias por registrarte!</p>
<p><a href="https://ejemplo.test/cuenta/confirmar/3f9a7c2e1b8d4f6a">Confirmar correo electrónico</a></p>
<p><a href="https://ejemplo.test/ayuda">Ayuda</a> · <a href="https://ejemplo.test/baja?id=55">Darse de baja</a></p>"#)
            .verify("https://ejemplo.test/cuenta/confirmar/3f9a7c2e1b8d4f6a"),
        Case::new("pt_br_html_code_with_price", "Seu código de confirmação")
            .html(r#"<p>Olá!</p><p>Seu código de confirmação é:</p>
<h2>305918</h2>
<p>Seu pedido de R$ 129,90 foi recebido em 03/11/2026. Dúvidas? Ligue 0800 123 4567.</p>
<p>Exemplo Ltda. · Av. Paulista, 1000 · São Paulo - SP · CEP 01310-100</p>"#)
            .code("305918"),
        Case::new("it_text_codice_with_order", "Il tuo codice di verifica")
            .text("Ciao,\n\nil tuo codice di verifica è 927461.\n\nOrdine n. 20240518 del 18/05/2024.\nEsempio S.r.l. - Via Roma 1, 00184 Roma\n")
            .code("927461"),
        Case::new("nl_html_verificatiecode", "Je verificatiecode")
            .html(r#"<p>Hoi,</p><p>Je verificatiecode is:</p><p style="font-size:28px;letter-spacing:5px">481 209</p>
<p>Bestelnummer 556677 · Voorbeeld B.V., Damrak 1, 1012 LG Amsterdam</p>"#)
            .code("481209"),
        Case::new("pl_text_kod_with_postal_code", "Kod weryfikacyjny")
            .text("Cześć,\n\nTwój kod weryfikacyjny to 719 305. Kod jest ważny przez 15 minut.\n\nPrzykład Sp. z o.o., ul. Marszałkowska 10, 00-590 Warszawa, tel. 22 123 45 67\n")
            .code("719305"),
        Case::new("ru_html_kod_with_order", "Код подтверждения")
            .html(r#"<p>Здравствуйте!</p><p>Ваш код подтверждения: <b>4821</b></p>
<p>Заказ № 123456 от 5 мая 2026 г. на сумму 2 990 ₽.</p>
<p>ООО «Пример», г. Москва, ул. Тверская, д. 7, 125009</p>"#)
            .code("4821"),
        Case::new("uk_text_kod_in_pairs", "Код для входу")
            .text("Вітаємо!\n\nВаш код для входу: 60 31 52\n\nНіколи не повідомляйте цей код іншим. Телефон підтримки: 0 800 300 545.\n")
            .code("603152"),
        Case::new("tr_text_kodunuz_with_order", "Doğrulama kodunuz")
            .text("Merhaba,\n\nDoğrulama kodunuz: 845120. Bu kodu kimseyle paylaşmayın.\n\nSipariş no: 99887766 · Tutar: 349,90 TL\nÖrnek A.Ş., Atatürk Cad. No: 12, 34000 İstanbul\n")
            .code("845120"),
        Case::new("zh_html_yanzhengma_with_phone", "【示例】验证码")
            .html(r#"<p>尊敬的用户：</p><p>您的验证码是：<span style="font-size:24px;color:#e4393c">362915</span>，5分钟内有效，请勿泄露给他人。</p>
<p>订单号：202611040001 · 客服电话：400-820-8820</p><p>示例科技有限公司 · 北京市海淀区中关村大街1号 100080</p>"#)
            .code("362915"),
        Case::new("zh_subject_only", "【示例】您的验证码为 628104")
            .text("如非本人操作，请忽略本邮件。\n")
            .code("628104"),
        Case::new("ja_text_ninsho_code_with_postal", "認証コードのお知らせ")
            .text("サンプル会員サービスをご利用いただきありがとうございます。\n\n認証コード：527384\n\nこのコードの有効期限は30分です。\n\n株式会社サンプル\n〒100-0005 東京都千代田区丸の内1-1-1\nTEL: 03-1234-5678\n")
            .code("527384"),
        Case::new("ja_html_confirm_registration", "メールアドレスの確認")
            .html(r#"<p>ご登録ありがとうございます。以下のボタンからメールアドレスを確認してください。</p>
<p><a href="https://sample.test/register/confirm?token=Gh7Jk2Lm9Np4Qr1St">メールアドレスを確認する</a></p>
<p><a href="https://sample.test/help">ヘルプ</a> · <a href="https://sample.test/mail/stop">配信停止</a></p>"#)
            .verify("https://sample.test/register/confirm?token=Gh7Jk2Lm9Np4Qr1St"),
        Case::new("ko_html_injeung_beonho", "[예시] 인증번호 안내")
            .html(r#"<p>안녕하세요, 예시입니다.</p><p>인증번호 [<b>903817</b>]를 입력해 주세요.</p>
<p>주문번호 20261104-12345 · 결제금액 15,000원</p><p>고객센터 1588-1234 · 서울특별시 강남구 테헤란로 123</p>"#)
            .code("903817"),
        Case::new("ko_html_verify_button", "이메일 인증")
            .html(r#"<p>아래 버튼을 눌러 이메일 인증을 완료해 주세요.</p>
<p><a href="https://example-ko.test/auth/email?key=Qw8Er7Ty6Ui5Op4As3">이메일 인증하기</a></p>
<p><a href="https://example-ko.test/unsubscribe">수신거부</a></p>"#)
            .verify("https://example-ko.test/auth/email?key=Qw8Er7Ty6Ui5Op4As3"),
        Case::new("ar_text_ramz", "رمز التحقق")
            .text("مرحبًا،\n\nرمز التحقق الخاص بك هو 274910\n\nلا تشارك هذا الرمز مع أي شخص. رقم الطلب: 556677\n")
            .code("274910"),
        Case::new("hi_text_otp", "आपका OTP")
            .text("नमस्ते,\n\nआपका OTP 583016 है। यह 10 मिनट के लिए वैध है।\n\nकिसी के साथ साझा न करें। ऑर्डर 778899 की राशि ₹1499 है।\n")
            .code("583016"),
        Case::new("hi_text_satyapan_kod", "सत्यापन कोड")
            .text("आपका सत्यापन कोड 640172 है।\n")
            .code("640172"),
    ]
}
