# SMS: the code early, then who it is for and how long it lives.
sms = { $code }は{ $app }の認証コードです。有効期限は{ $minutes }分です。
# Voice: said twice; $code is the digits with commas between.
voice = { $app }の認証コードは{ $code }です。
