# SMS: the code early, then who it is for and how long it lives.
sms = { $app } 인증번호: { $code }. { $minutes }분간 유효합니다.
# Voice: said twice; $code is the digits with commas between.
voice = { $app } 인증번호는 { $code }입니다.
