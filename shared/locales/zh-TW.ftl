# SMS: the code early, then who it is for and how long it lives.
sms = { $code }是您的{ $app }驗證碼，{ $minutes }分鐘內有效。
# Voice: said twice; $code is the digits with commas between.
voice = 您的{ $app }驗證碼是{ $code }。
