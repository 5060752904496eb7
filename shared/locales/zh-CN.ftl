# SMS: the code early, then who it is for and how long it lives.
sms = { $code }是您的{ $app }验证码，{ $minutes }分钟内有效。
# Voice: said twice; $code is the digits with commas between.
voice = 您的{ $app }验证码是{ $code }。
